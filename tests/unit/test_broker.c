/* test_broker.c: guardian-launch's broker (launch/serve.c) and guardian's client (tpm/broker.c)
 * over a socketpair, with swtpm behind: exact-length typed messages or the socket is closed;
 * EXTEND takes a policy only and keeps the PCR equal to the log's fold. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../base/base.h"
#include "../../launch/launch.h"
#include "../../tpm/broker.h"
#include "../harness/harness.h"

static void setup(void)
{
	log_set_level(LOG_LEVEL_ERROR); /* the refusals below are on purpose */
	setenv("TSS2_LOG", "all+NONE", 1);
}

static void teardown(void)
{
	unsetenv(GD_BROKER_FD_ENV);
	h_cleanup();
}

TestSuite(broker, .init = setup, .fini = teardown, .timeout = 60);

/* A broker as guardian-launch leaves it (the launch log in the PCR), serving one connection in a
 * thread; 'client' is guardian's end. */
struct bed {
	struct launch_broker *b;
	int client, server;
	pthread_t thread;
	bool running;
};

static void *serve(void *arg)
{
	struct bed *bed = arg;

	while (launch_broker_answer(bed->b, bed->server) == 0)
		;
	return NULL;
}

static void bed_connect(struct bed *bed)
{
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	bed->client = sv[0];
	bed->server = sv[1];
	cr_assert_eq(pthread_create(&bed->thread, NULL, serve, bed), 0);
	bed->running = true;
}

static void bed_up(struct bed *bed)
{
	static const char *const names[] = { "/usr/bin/guardian", "/etc/guardian/site.json",
					     "/etc/guardian/policy.json" };
	static const char *const types[] = { "exe", "config", "policy" };
	struct launch_config cfg = { .pcr = 23 };
	struct gd_tpm *t = NULL;
	struct meas_log *log = malloc(sizeof(*log));
	uint8_t *blob = NULL, d[32];
	size_t len = 0;
	char why[512] = "";
	int port = 0;

	H_NEED_SWTPM();
	memset(bed, 0, sizeof(*bed));
	cr_assert_gt(h_swtpm(&port), 0, "swtpm did not start (see %s)", h_dir());
	snprintf(cfg.tcti, sizeof(cfg.tcti), "%s", h_swtpm_tcti(port));
	cr_assert_eq(gd_tpm_open(cfg.tcti, &t, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(gd_tpm_ak_create(t, &blob, &len, why, sizeof(why)), 0, "%s", why);
	gd_tpm_close(t);
	meas_init(log);
	for (size_t i = 0; i < 3; i++) {
		mbedtls_sha256_ret((const unsigned char *)names[i], strlen(names[i]), d, 0);
		meas_add(log, types[i], names[i], d);
	}
	bed->b = calloc(1, sizeof(*bed->b));
	cr_assert_not_null(bed->b);
	cr_assert_eq(launch_tpm_start(&cfg, log, blob, len, &bed->b->tpm, why, sizeof(why)), 0,
		     "%s", why);
	bed->b->pcr = 23;
	bed->b->log = *log;
	free(log);
	free(blob);
	bed_connect(bed);
}

/* Guardian goes away: the broker sees the end of the connection and its thread returns. */
static void bed_hangup(struct bed *bed)
{
	close(bed->client);
	if (bed->running)
		pthread_join(bed->thread, NULL);
	bed->running = false;
}

static void bed_down(struct bed *bed)
{
	bed_hangup(bed);
	gd_tpm_close(bed->b->tpm);
	free(bed->b);
}

/* The broker closed its end: the client reads the end of the stream within 5 s. */
static void expect_closed(struct bed *bed)
{
	struct pollfd p = { .fd = bed->client, .events = POLLIN };
	char byte;

	cr_assert_eq(poll(&p, 1, 5000), 1, "the broker kept the connection open");
	cr_expect_eq(recv(bed->client, &byte, 1, MSG_DONTWAIT), 0,
		     "the broker answered instead of closing");
	pthread_join(bed->thread, NULL);
	bed->running = false;
}

static int call(struct bed *bed, const struct gd_broker_req *req, struct gd_broker_resp *resp,
		char *why, size_t cap)
{
	return gd_broker_call(bed->client, req, resp, why, cap);
}

static void read_pcr(struct bed *bed, uint8_t value[32])
{
	char why[512] = "";

	cr_assert_eq(gd_tpm_pcr_read(bed->b->tpm, 23, value, why, sizeof(why)), 0, "%s", why);
}

Test(broker, a_message_of_another_length_closes_the_socket)
{
	struct gd_broker_req req = { .type = GD_BROKER_LOG };
	uint8_t longer[sizeof(req) + 1];
	struct bed bed;

	bed_up(&bed);
	cr_assert_eq(send(bed.client, &req, 10, 0), 10);
	expect_closed(&bed);
	close(bed.client);

	bed_connect(&bed);
	memset(longer, 0, sizeof(longer));
	memcpy(longer, &req, sizeof(req));
	cr_assert_eq(send(bed.client, longer, sizeof(longer), 0), (ssize_t)sizeof(longer));
	expect_closed(&bed);
	bed_down(&bed);
}

Test(broker, an_unknown_type_closes_the_socket)
{
	struct gd_broker_req req = { .type = 99 };
	struct gd_broker_resp *resp = calloc(1, sizeof(*resp));
	char why[512] = "";
	struct bed bed;

	bed_up(&bed);
	cr_assert_eq(send(bed.client, &req, sizeof(req), 0), (ssize_t)sizeof(req));
	expect_closed(&bed);
	/* guardian's client says the broker is gone. */
	req.type = GD_BROKER_LOG;
	cr_expect_eq(call(&bed, &req, resp, why, sizeof(why)), GD_EIO);
	cr_expect_not_null(strstr(why, "gone"), "%s", why);
	free(resp);
	bed_down(&bed);
}

Test(broker, extend_of_anything_but_a_policy_is_refused)
{
	struct gd_broker_req req = { .type = GD_BROKER_EXTEND, .kind = "exe", .name = "/tmp/x" };
	struct gd_broker_resp *resp = calloc(1, sizeof(*resp));
	uint8_t before[32], after[32];
	char why[512] = "";
	struct bed bed;

	bed_up(&bed);
	read_pcr(&bed, before);
	memset(req.sha256, 0x11, 32);
	cr_expect_eq(call(&bed, &req, resp, why, sizeof(why)), GD_EDENIED);
	cr_expect_not_null(strstr(why, "\"policy\""), "%s", why);
	/* A name that is not NUL-terminated. */
	snprintf(req.kind, sizeof(req.kind), "policy");
	memset(req.name, 'a', sizeof(req.name));
	cr_expect_eq(call(&bed, &req, resp, why, sizeof(why)), GD_EINVAL);
	/* The connection stays; nothing was added or extended. */
	req = (struct gd_broker_req){ .type = GD_BROKER_LOG };
	cr_assert_eq(call(&bed, &req, resp, why, sizeof(why)), 0, "%s", why);
	cr_expect_eq(resp->log.n, 3);
	bed_hangup(&bed);
	read_pcr(&bed, after);
	cr_expect_arr_eq(before, after, 32, "a refused EXTEND changed the PCR");
	free(resp);
	bed_down(&bed);
}

Test(broker, extend_policy_then_log_shows_it_and_the_pcr_is_the_fold)
{
	struct gd_broker_req req = { .type = GD_BROKER_EXTEND,
				     .kind = "policy",
				     .name = "/etc/guardian/policy.json" };
	struct gd_broker_resp *resp = calloc(1, sizeof(*resp));
	uint8_t fold[32], pcr[32];
	char why[512] = "";
	struct bed bed;

	bed_up(&bed);
	memset(req.sha256, 0x42, 32);
	cr_assert_eq(call(&bed, &req, resp, why, sizeof(why)), 0, "%s", why);
	req = (struct gd_broker_req){ .type = GD_BROKER_LOG };
	cr_assert_eq(call(&bed, &req, resp, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(resp->log.n, 4);
	cr_expect_str_eq(resp->log.items[3].type, "policy");
	cr_expect_str_eq(resp->log.items[3].name, "/etc/guardian/policy.json");
	cr_expect_eq(resp->log.items[3].sha256[0], 0x42);
	cr_expect_str_eq(resp->log.items[0].type, "exe");
	meas_fold(&resp->log, fold);
	cr_expect_arr_eq(resp->log.reg, fold, 32, "the log's register is not its fold");
	bed_hangup(&bed);
	read_pcr(&bed, pcr);
	cr_expect_arr_eq(pcr, fold, 32, "PCR 23 is not the log's fold");
	free(resp);
	bed_down(&bed);
}

Test(broker, quote_and_pubkey_verify)
{
	struct gd_broker_req req = { .type = GD_BROKER_PUBKEY };
	struct gd_broker_resp *resp = calloc(1, sizeof(*resp));
	char why[512] = "", pem[GD_TPM_PEM_MAX];
	mbedtls_pk_context pk;
	uint8_t hash[32];
	struct bed bed;

	bed_up(&bed);
	cr_assert_eq(call(&bed, &req, resp, why, sizeof(why)), 0, "%s", why);
	snprintf(pem, sizeof(pem), "%s", resp->pem);
	req = (struct gd_broker_req){ .type = GD_BROKER_QUOTE };
	memset(req.qualifying, 0xab, 32);
	cr_assert_eq(call(&bed, &req, resp, why, sizeof(why)), 0, "%s", why);
	cr_assert_gt(resp->attest_len, 100);
	/* extraData: after magic, type and the signer's name. */
	{
		size_t name_len = (size_t)resp->attest[6] << 8 | resp->attest[7];
		const uint8_t *extra = resp->attest + 8 + name_len;

		cr_expect_eq(extra[0] << 8 | extra[1], 32);
		cr_expect_arr_eq(extra + 2, req.qualifying, 32);
	}
	mbedtls_pk_init(&pk);
	cr_assert_eq(mbedtls_pk_parse_public_key(&pk, (const unsigned char *)pem, strlen(pem) + 1),
		     0);
	mbedtls_sha256_ret(resp->attest, resp->attest_len, hash, 0);
	cr_expect_eq(mbedtls_pk_verify(&pk, MBEDTLS_MD_SHA256, hash, 32, resp->sig, resp->sig_len),
		     0, "the quote's signature does not verify with PUBKEY's key");
	mbedtls_pk_free(&pk);
	free(resp);
	bed_down(&bed);
}

Test(broker, extend_is_refused_once_the_log_is_full)
{
	struct gd_broker_req req = { .type = GD_BROKER_EXTEND, .kind = "policy", .name = "p" };
	struct gd_broker_resp *resp = calloc(1, sizeof(*resp));
	uint8_t fold[32], pcr[32];
	char why[512] = "";
	struct bed bed;

	bed_up(&bed);
	for (size_t n = 3; n < MEAS_MAX; n++)
		cr_assert_eq(call(&bed, &req, resp, why, sizeof(why)), 0, "item %zu: %s", n, why);
	cr_expect_eq(call(&bed, &req, resp, why, sizeof(why)), GD_EFULL);
	cr_expect_not_null(strstr(why, "full"), "%s", why);
	req = (struct gd_broker_req){ .type = GD_BROKER_LOG };
	cr_assert_eq(call(&bed, &req, resp, why, sizeof(why)), 0, "%s", why);
	cr_expect_eq(resp->log.n, MEAS_MAX);
	meas_fold(&resp->log, fold);
	bed_hangup(&bed);
	read_pcr(&bed, pcr);
	cr_expect_arr_eq(pcr, fold, 32, "the refused EXTEND reached the PCR");
	free(resp);
	bed_down(&bed);
}

Test(broker, the_client_takes_only_a_seqpacket_socket_from_the_environment)
{
	int sv[2], pipefd[2];
	char text[16];

	unsetenv(GD_BROKER_FD_ENV);
	cr_expect_eq(gd_broker_fd_from_env(), -1);
	setenv(GD_BROKER_FD_ENV, "3x", 1);
	cr_expect_eq(gd_broker_fd_from_env(), -1);
	cr_assert_eq(pipe(pipefd), 0);
	snprintf(text, sizeof(text), "%d", pipefd[0]);
	setenv(GD_BROKER_FD_ENV, text, 1);
	cr_expect_eq(gd_broker_fd_from_env(), -1, "a pipe taken for the broker");
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	snprintf(text, sizeof(text), "%d", sv[1]);
	setenv(GD_BROKER_FD_ENV, text, 1);
	cr_expect_eq(gd_broker_fd_from_env(), sv[1]);
	cr_expect_eq(fcntl(sv[1], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC,
		     "guardian's children would inherit the broker");
	close(pipefd[0]);
	close(pipefd[1]);
	close(sv[0]);
	close(sv[1]);
}

/* A broker that first answers an earlier request (late, after that one timed out), then this one.
 */
static void *late_then_right(void *arg)
{
	int fd = *(int *)arg;
	struct gd_broker_req req;
	struct gd_broker_resp *resp = calloc(1, sizeof(*resp));

	if (resp != NULL && recv(fd, &req, sizeof(req), 0) == (ssize_t)sizeof(req)) {
		resp->type = req.type;
		resp->seq = req.seq - 1;
		snprintf(resp->pem, sizeof(resp->pem), "stale");
		send(fd, resp, sizeof(*resp), MSG_NOSIGNAL);
		resp->seq = req.seq;
		snprintf(resp->pem, sizeof(resp->pem), "fresh");
		send(fd, resp, sizeof(*resp), MSG_NOSIGNAL);
	}
	free(resp);
	return NULL;
}

Test(broker, a_late_answer_to_an_earlier_request_is_not_taken_for_this_one)
{
	struct gd_broker_req req = { .type = GD_BROKER_PUBKEY };
	struct gd_broker_resp *resp = calloc(1, sizeof(*resp));
	char why[256] = "";
	pthread_t thread;
	int sv[2];

	cr_assert_not_null(resp);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(pthread_create(&thread, NULL, late_then_right, &sv[1]), 0);
	cr_assert_eq(gd_broker_call(sv[0], &req, resp, why, sizeof(why)), 0, "%s", why);
	cr_expect_str_eq(resp->pem, "fresh");
	pthread_join(thread, NULL);
	close(sv[0]);
	close(sv[1]);
	free(resp);
}
