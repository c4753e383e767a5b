/* test_reload.c: policy reloads (SIGHUP) while other threads use the policy: the console's
 * `why` and telemetry keep working, and nothing reads what a reload freed. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../harness/harness.h"
#include "site.h"

#define DEVICE	"press-07"
#define NPOINTS 1000

/* Swaps policy.json between two policies and sends SIGHUP, until told to stop. */
struct reloader {
	pid_t gd;
	char policy[2][256], live[256], tmp[256];
	int stop; /* atomic */
	int sent;
	pthread_t thread;
	bool started;
};

static struct reloader reloader;

static void reloader_stop(struct reloader *r)
{
	if (!r->started)
		return;
	__atomic_store_n(&r->stop, 1, __ATOMIC_RELAXED);
	pthread_join(r->thread, NULL);
	r->started = false;
}

static void setup(void)
{
	it_pki(DEVICE);
}

static void teardown(void)
{
	reloader_stop(&reloader); /* before guardian goes: even when a test failed half-way */
	it_teardown();
}

TestSuite(reload, .init = setup, .fini = teardown, .timeout = 120);

/* A policy that lets every point out under an alias "<prefix><i>": each reload between two of
 * them frees the names the previous one gave. */
static void write_policy(const char *path, int bport, const char *prefix)
{
	size_t cap = NPOINTS * 96 + 256, n = 0;
	char *text = malloc(cap);

	cr_assert_not_null(text);
	n += (size_t)snprintf(text + n, cap - n,
			      "{\"version\":1,\"connections\":[\"localhost:%d\"],\"uplink\":[",
			      bport);
	for (int i = 0; i < NPOINTS; i++)
		n += (size_t)snprintf(text + n, cap - n,
				      "%s{\"points\":\"plc1/r%d\",\"action\":\"allow\","
				      "\"alias\":\"%s%d\"}",
				      i ? "," : "", i, prefix, i);
	snprintf(text + n, cap - n, "]}");
	h_write(path, text);
	free(text);
}

static void write_site(int bport, int mport)
{
	size_t cap = NPOINTS * 64 + 1024, n = 0;
	char *text = malloc(cap);

	cr_assert_not_null(text);
	n += (size_t)snprintf(
		text + n, cap - n,
		"{\"device_id\":\"" DEVICE "\",\"policy\":\"policy.json\",\"state_dir\":\"%s\","
		"\"uplink\":{\"host\":\"localhost\",\"port\":%d,\"ca_file\":\"pki/ca.crt\","
		"\"cert_file\":\"pki/device.crt\",\"key_file\":\"pki/device.key\"},"
		"\"adapters\":[{\"name\":\"plc1\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\","
		"\"port\":%d,\"poll_interval_ms\":50,\"points\":[",
		h_dir(), bport, mport);
	for (int i = 0; i < NPOINTS; i++)
		n += (size_t)snprintf(text + n, cap - n, "%s{\"name\":\"r%d\",\"address\":%d}",
				      i ? "," : "", i, 1000 + i);
	snprintf(text + n, cap - n, "]}]}");
	h_write(h_path("site.json"), text);
	free(text);
}

static void *reload_loop(void *arg)
{
	struct reloader *r = arg;

	while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED)) {
		/* A new link renamed over the old: guardian never reads a half-written policy. */
		if (link(r->policy[r->sent % 2], r->tmp) != 0 || rename(r->tmp, r->live) != 0)
			break;
		if (kill(r->gd, SIGHUP) != 0)
			break;
		r->sent++;
		h_sleep_ms(2); /* pacing only: signals that meet are one reload */
	}
	return NULL;
}

/* Reads the console until 'needle' shows after 'from'; returns the text from 'from' on. */
static const char *console_expect(int fd, char *buf, size_t cap, size_t *len, size_t from,
				  const char *needle)
{
	int64_t end = h_ms() + 10000;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		buf[*len] = '\0';
		if (strstr(buf + from, needle) != NULL)
			return buf + from;
		cr_assert_lt(h_ms(), end, "the console never showed \"%s\"; it showed:\n%s", needle,
			     buf + from);
		if (poll(&p, 1, 100) <= 0)
			continue;
		n = read(fd, buf + *len, cap - 1 - *len);
		cr_assert_gt(n, 0, "the console closed: guardian died? log:\n%s",
			     h_read(h_path("guardian.log")));
		*len += (size_t)n;
	}
}

/*
 * `why` on the console looks a point up by its alias and explains the
 * policy, while SIGHUP swaps in another policy with other aliases and frees
 * the old names. Under make check (AddressSanitizer) a lookup without the
 * policy lock reads freed names; under make tsan the race itself is reported.
 */
Test(reload, why_on_the_console_while_sighup_swaps_the_policy)
{
	static char screen[1 << 16];
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int bport = h_free_port(), mport = h_free_port(), fd, answers = 0;
	struct reloader *r = &reloader;
	char simargs[128];
	size_t len = 0, reloads = 0;
	int64_t end;

	cr_assert_gt(h_mosquitto(bport), 0);
	cr_assert_gt(h_subscribe(bport, "guardian/" DEVICE "/telemetry", h_path("sub.out"), false),
		     0);
	snprintf(simargs, sizeof(simargs), "--tcp 127.0.0.1:%d --step-ms 100 --bulk %d", mport,
		 NPOINTS);
	cr_assert_gt(h_plcsim(simargs, h_path("plcsim.log")), 0);
	snprintf(r->policy[0], sizeof(r->policy[0]), "%s", h_path("policy-a.json"));
	snprintf(r->policy[1], sizeof(r->policy[1]), "%s", h_path("policy-b.json"));
	snprintf(r->live, sizeof(r->live), "%s", h_path("policy.json"));
	snprintf(r->tmp, sizeof(r->tmp), "%s", h_path("policy.json.tmp"));
	write_policy(r->policy[0], bport, "a");
	write_policy(r->policy[1], bport, "b");
	write_policy(r->live, bport, "a");
	write_site(bport, mport);
	r->gd = h_guardian(h_path("site.json"), h_path("guardian.log"));
	cr_assert_gt(r->gd, 0);
	cr_assert_eq(h_wait_contains(h_path("sub.out"), "\"name\":\"a999\"", 20000), 0,
		     "no telemetry; guardian log:\n%s", h_read(h_path("guardian.log")));

	/* The technician's session, as `guardian console` attaches. */
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", h_path("console.sock"));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0, "connect %s: %s",
		     addr.sun_path, strerror(errno));
	console_expect(fd, screen, sizeof(screen), &len, 0, "guardian> ");

	cr_assert_eq(pthread_create(&r->thread, NULL, reload_loop, r), 0);
	r->started = true;
	/* The last point, so that the lookup walks every name: by the alias of one policy and by
	 * its own name, which both always know. Until enough of both have met (sanitizer builds
	 * reload far slower). */
	end = h_ms() + 60000;
	while (h_ms() < end && (answers < 400 || reloads < 20)) {
		static const char *const asks[] = { "why plc1/r999\r", "why a999\r" };
		const char *ask = asks[answers % 2];
		const char *out;
		size_t from;

		if (len > sizeof(screen) / 2)
			len = 0; /* the old answers are read: start the screen over */
		from = len;
		cr_assert_eq(write(fd, ask, strlen(ask)), (ssize_t)strlen(ask));
		out = console_expect(fd, screen, sizeof(screen), &len, from, "guardian> ");
		/* The alias may be gone by the time it is asked: then "no point", never garbage. */
		cr_assert(strstr(out, "uplink") != NULL ||
				  (answers % 2 == 1 && strstr(out, "no point")),
			  "why answered:\n%s", out);
		if (++answers % 20 == 0)
			reloads = h_count(h_path("guardian.log"), "policy reloaded");
	}
	reloader_stop(r);
	close(fd);
	reloads = h_count(h_path("guardian.log"), "policy reloaded");
	cr_expect_geq(reloads, 20, "only %zu reloads in guardian's log (%d SIGHUPs sent)", reloads,
		      r->sent);
	cr_expect_eq(kill(r->gd, 0), 0, "guardian died");
	/* Telemetry still flows under the names in force. */
	{
		size_t before = h_count(h_path("sub.out"), "/telemetry ");

		cr_expect_eq(h_wait_count(h_path("sub.out"), "/telemetry ", before + 3, 10000), 0,
			     "telemetry stopped after the reloads");
	}
	cr_expect_eq(h_stop(r->gd, 10000), 0, "guardian did not stop cleanly; log:\n%s",
		     h_read(h_path("guardian.log")));
}
