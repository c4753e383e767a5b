/* harness.c: starts and stops real parts for integration tests and benchmarks. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define MAX_PROCS 32
/* What a sanitizer writes when it finds something: ASan, LSan, UBSan (make check), TSan (make
 * tsan). */
#define SANITIZER_REPORT "ERROR: (Address|Leak)Sanitizer|runtime error:|WARNING: ThreadSanitizer"

static char workdir[64];
static pid_t procs[MAX_PROCS];
static size_t nprocs;

int64_t h_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void h_sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

const char *h_dir(void)
{
	if (workdir[0] == '\0') {
		strcpy(workdir, "/tmp/gd-test-XXXXXX");
		if (mkdtemp(workdir) == NULL) {
			perror("mkdtemp");
			abort();
		}
	}
	return workdir;
}

const char *h_path(const char *name)
{
	static char bufs[8][256];
	static unsigned next;
	char *b = bufs[next++ % 8];

	snprintf(b, sizeof(bufs[0]), "%s/%s", h_dir(), name);
	return b;
}

const char *h_build(void)
{
	const char *b = getenv("GUARDIAN_BUILD");

	return b && *b ? b : "build";
}

const char *h_src(void)
{
	const char *s = getenv("GUARDIAN_SRC");

	return s && *s ? s : ".";
}

static int ephemeral_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int port = -1;

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/*
 * A port free now and not handed out before by this process: the kernel may give
 * the same ephemeral port to two binds in a row once the first socket is closed,
 * and a test asking for three ports must get three.
 */
int h_free_port(void)
{
	static int given[256];
	static size_t ngiven;

	for (int tries = 0; tries < 64; tries++) {
		int port = ephemeral_port();
		bool seen = false;

		for (size_t i = 0; i < ngiven && i < 256; i++)
			seen = seen || given[i] == port;
		if (port > 0 && !seen) {
			given[ngiven++ % 256] = port;
			return port;
		}
	}
	return -1;
}

int h_wait_port(int port, int timeout_ms)
{
	int64_t end = h_ms() + timeout_ms;

	do {
		struct sockaddr_in sa = { .sin_family = AF_INET,
					  .sin_port = htons((uint16_t)port),
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		int ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;

		if (fd >= 0)
			close(fd);
		if (ok)
			return 0;
		h_sleep_ms(20);
	} while (h_ms() < end);
	return -1;
}

pid_t h_spawn(const char *logfile, const char *const argv[])
{
	pid_t parent = getpid();
	pid_t pid;

	if (nprocs == MAX_PROCS)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		fd = open(logfile ? logfile : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0) {
			dup2(fd, 0);
			close(fd);
		}
		{
			/* exec wants writable strings; this is the child's own copy. */
			char *args[64];
			size_t n = 0;

			while (argv[n] != NULL && n < 63) {
				args[n] = strdup(argv[n]);
				n++;
			}
			args[n] = NULL;
			execvp(args[0], args);
		}
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	procs[nprocs++] = pid;
	return pid;
}

int h_stop(pid_t pid, int timeout_ms)
{
	int64_t end = h_ms() + timeout_ms;
	int status = -1;

	if (pid <= 0)
		return -1;
	for (size_t i = 0; i < nprocs; i++) {
		if (procs[i] == pid) {
			procs[i] = procs[--nprocs];
			break;
		}
	}
	kill(pid, SIGTERM);
	while (h_ms() < end) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return status;
		if (r < 0)
			return -1;
		h_sleep_ms(10);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return status;
}

int h_cleanup(void)
{
	int reports = 0;

	while (nprocs > 0)
		h_stop(procs[nprocs - 1], 5000);
	if (workdir[0] == '\0')
		return 0;
	/* A sanitizer report from a child lands only in its log: surface it here. */
	reports = h_sh("! grep -l -E '%s' '%s'/*.log >/dev/null 2>&1", SANITIZER_REPORT, workdir);
	if (reports != 0)
		h_sh("grep -B2 -A40 -E '%s' '%s'/*.log >&2", SANITIZER_REPORT, workdir);
	if (getenv("GUARDIAN_KEEP") == NULL) {
		h_sh("rm -rf '%s'", workdir);
		workdir[0] = '\0';
	}
	if (reports != 0) {
		/*
		 * Criterion counts no assertion that fails in a suite's .fini, where this
		 * runs: only a crash there fails the run (its exit status). So crash, and
		 * say why first. No core file: the report above is the evidence.
		 */
		struct rlimit no_core = { 0, 0 };

		fprintf(stderr, "harness: a child process reported a sanitizer error (above); "
				"failing the run\n");
		setrlimit(RLIMIT_CORE, &no_core);
		abort();
	}
	return reports;
}

int h_sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	rc = system(cmd);
	return rc == -1 ? -1 : WEXITSTATUS(rc);
}

void h_write(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (f == NULL) {
		perror(path);
		abort();
	}
	fputs(text, f);
	fclose(f);
}

char *h_read(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0;
	FILE *mem;
	char chunk[65536];
	size_t n;

	if (f == NULL)
		return NULL;
	mem = open_memstream(&buf, &len);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fwrite(chunk, 1, n, mem);
	fclose(mem);
	fclose(f);
	return buf;
}

size_t h_count(const char *path, const char *needle)
{
	char *text = needle[0] != '\0' ? h_read(path) : NULL; /* "" is nowhere to count */
	size_t n = 0;

	size_t nlen = strlen(needle);

	/* By hand: under ASan, strstr checks the whole rest of the text at every call, which is
	 * quadratic on a subscriber's file of hundreds of megabytes. */
	for (const char *p = text; p != NULL && *p != '\0'; p++) {
		if (*p == needle[0] && strncmp(p, needle, nlen) == 0)
			n++;
	}
	free(text);
	return n;
}

int h_wait_contains(const char *path, const char *needle, int timeout_ms)
{
	return h_wait_count(path, needle, 1, timeout_ms);
}

int h_wait_count(const char *path, const char *needle, size_t n, int timeout_ms)
{
	int64_t end = h_ms() + timeout_ms;

	do {
		if (h_count(path, needle) >= n)
			return 0;
		h_sleep_ms(20);
	} while (h_ms() < end);
	return -1;
}

int h_wait_exit(pid_t pid, int timeout_ms)
{
	int64_t end = h_ms() + timeout_ms;
	int status;

	do {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid) {
			for (size_t i = 0; i < nprocs; i++) {
				if (procs[i] == pid) {
					procs[i] = procs[--nprocs];
					break;
				}
			}
			return status;
		}
		if (r < 0)
			return -1;
		h_sleep_ms(10);
	} while (h_ms() < end);
	return -1;
}

int h_pki(const char *device_id)
{
	return h_sh("sh '%s/tools/pki.sh' '%s' '%s' >'%s' 2>&1", h_src(), h_path("pki"), device_id,
		    h_path("pki.log"));
}

pid_t h_mosquitto(int port)
{
	/* Started as root, mosquitto drops to user "mosquitto", which cannot read our 0600 key. */
	const struct passwd *pw = getpwuid(getuid());
	char conf[2048];
	char portarg[16];
	pid_t pid;

	snprintf(conf, sizeof(conf),
		 "per_listener_settings false\n"
		 "allow_anonymous false\n"
		 "user %s\n"
		 "persistence true\n"
		 "persistence_location %s/\n"
		 "autosave_interval 1\n"
		 "max_queued_messages 100000\n"
		 "log_dest stderr\n"
		 "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
		 "listener %d 127.0.0.1\n"
		 "cafile %s/ca.crt\n"
		 "certfile %s/broker.crt\n"
		 "keyfile %s/broker.key\n"
		 "require_certificate true\n"
		 "use_identity_as_username true\n",
		 pw ? pw->pw_name : "root", h_dir(), port, h_path("pki"), h_path("pki"),
		 h_path("pki"));
	h_write(h_path("mosquitto.conf"), conf);
	snprintf(portarg, sizeof(portarg), "%d", port);
	{
		const char *argv[] = { "mosquitto", "-c", h_path("mosquitto.conf"), NULL };

		pid = h_spawn(h_path("mosquitto.log"), argv);
	}
	if (pid > 0 && h_wait_port(port, 5000) != 0) {
		h_stop(pid, 1000);
		return -1;
	}
	return pid;
}

pid_t h_subscribe_as(int port, const char *topic, const char *outfile, const char *cert_prefix,
		     const char *client_id, bool persistent_session)
{
	char portarg[16], ca[256], cert[256], key[256], topics[512];
	size_t subacks = h_count(outfile, "received SUBACK");
	pid_t pid;

	snprintf(portarg, sizeof(portarg), "%d", port);
	snprintf(ca, sizeof(ca), "%s/ca.crt", h_path("pki"));
	snprintf(cert, sizeof(cert), "%s.crt", cert_prefix);
	snprintf(key, sizeof(key), "%s.key", cert_prefix);
	{
		/* Line-buffered: a debug line is in the file as soon as it is printed. */
		const char *argv[28] = {
			"stdbuf", "-oL", "mosquitto_sub", "-h", "localhost", "-p", portarg,
			"--cafile", ca, "--cert", cert, "--key", key, "-q", "1", "-v",
			/* Debug lines ("Client ... received SUBACK") say when the
			 * subscription holds; they never look like "topic payload". */
			"-d"
		};
		size_t n = 0;

		while (argv[n] != NULL)
			n++;
		snprintf(topics, sizeof(topics), "%s", topic);
		for (char *save = NULL, *t = strtok_r(topics, " ", &save); t != NULL && n < 22;
		     t = strtok_r(NULL, " ", &save)) {
			argv[n++] = "-t";
			argv[n++] = t;
		}
		/* A persistent session ("-c -i viewer") keeps QoS 1 messages while it is away. */
		if (persistent_session)
			argv[n++] = "-c";
		if (client_id != NULL) {
			argv[n++] = "-i";
			argv[n++] = client_id;
		}
		argv[n] = NULL;
		pid = h_spawn(outfile, argv);
	}
	/* Ready when the broker has acknowledged the subscription: what is published from now
	 * on reaches it. */
	if (pid > 0 && h_wait_count(outfile, "received SUBACK", subacks + 1, 10000) != 0) {
		h_stop(pid, 1000);
		return -1;
	}
	return pid;
}

pid_t h_subscribe(int port, const char *topic, const char *outfile, bool persistent_session)
{
	char prefix[256];

	snprintf(prefix, sizeof(prefix), "%s/viewer", h_path("pki"));
	return h_subscribe_as(port, topic, outfile, prefix, persistent_session ? "viewer" : NULL,
			      persistent_session);
}

int h_publish(int port, const char *topic, const char *payload)
{
	return h_sh("mosquitto_pub -h localhost -p %d --cafile '%s/ca.crt' --cert '%s/viewer.crt' "
		    "--key '%s/viewer.key' -q 1 -t '%s' -m '%s' >>'%s' 2>&1",
		    port, h_path("pki"), h_path("pki"), h_path("pki"), topic, payload,
		    h_path("pub.log"));
}

pid_t h_plcsim(const char *args, const char *logfile)
{
	const char *argv[32];
	char bin[256];
	char *copy = strdup(args);
	size_t n = 0;
	pid_t pid;

	snprintf(bin, sizeof(bin), "%s/plcsim", h_build());
	argv[n++] = bin;
	for (char *tok = strtok(copy, " "); tok != NULL && n < 30; tok = strtok(NULL, " "))
		argv[n++] = tok;
	argv[n] = NULL;
	pid = h_spawn(logfile, argv);
	free(copy);
	if (pid > 0 && h_wait_contains(logfile, "plcsim: ready", 10000) != 0) {
		h_stop(pid, 1000);
		return -1;
	}
	return pid;
}

pid_t h_pty_pair(const char *a, const char *b)
{
	char la[300], lb[300];
	pid_t pid;

	snprintf(la, sizeof(la), "pty,raw,echo=0,link=%s", a);
	snprintf(lb, sizeof(lb), "pty,raw,echo=0,link=%s", b);
	{
		const char *argv[] = { "socat", la, lb, NULL };

		pid = h_spawn(h_path("socat.log"), argv);
	}
	for (int i = 0; i < 250; i++) {
		if (access(a, F_OK) == 0 && access(b, F_OK) == 0)
			return pid;
		h_sleep_ms(20);
	}
	h_stop(pid, 1000);
	return -1;
}

pid_t h_guardian(const char *config, const char *logfile)
{
	char bin[256];

	snprintf(bin, sizeof(bin), "%s/guardian", h_build());
	{
		const char *argv[] = { bin, "run", "-c", config, NULL };

		return h_spawn(logfile, argv);
	}
}

static void add_point(struct h_telemetry *t, const cJSON *p, uint64_t seq)
{
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(p, "name");
	const cJSON *value = cJSON_GetObjectItemCaseSensitive(p, "value");
	const cJSON *quality = cJSON_GetObjectItemCaseSensitive(p, "quality");
	const cJSON *unit = cJSON_GetObjectItemCaseSensitive(p, "unit");
	const cJSON *ts = cJSON_GetObjectItemCaseSensitive(p, "ts");
	struct h_point *hp;
	char *vtext;

	if (t->npoints == 0 || (t->npoints >= 64 && (t->npoints & (t->npoints - 1)) == 0)) {
		size_t cap = t->npoints ? t->npoints * 2 : 64;

		t->points = realloc(t->points, cap * sizeof(*t->points));
	}
	hp = &t->points[t->npoints++];
	memset(hp, 0, sizeof(*hp));
	hp->seq = seq;
	if (cJSON_IsString(name))
		snprintf(hp->name, sizeof(hp->name), "%s", name->valuestring);
	if (cJSON_IsString(quality))
		snprintf(hp->quality, sizeof(hp->quality), "%s", quality->valuestring);
	if (cJSON_IsString(unit))
		snprintf(hp->unit, sizeof(hp->unit), "%s", unit->valuestring);
	if (cJSON_IsNumber(ts))
		hp->ts = (int64_t)ts->valuedouble;
	if (cJSON_IsString(value)) {
		snprintf(hp->value, sizeof(hp->value), "%s", value->valuestring);
	} else if (value != NULL) {
		vtext = cJSON_PrintUnformatted(value);
		snprintf(hp->value, sizeof(hp->value), "%s", vtext ? vtext : "?");
		free(vtext);
	} else {
		strcpy(hp->value, "(missing)");
	}
}

void h_telemetry_read(const char *file, struct h_telemetry *out)
{
	char *text = h_read(file);
	char *save = NULL;

	memset(out, 0, sizeof(*out));
	if (text == NULL)
		return;
	for (char *line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char *json = strchr(line, ' ');
		const cJSON *points, *p, *seq, *boot;
		cJSON *doc;
		uint64_t s;

		if (json == NULL || strstr(line, "/telemetry ") == NULL)
			continue;
		doc = cJSON_Parse(json + 1);
		if (doc == NULL)
			continue;
		seq = cJSON_GetObjectItemCaseSensitive(doc, "seq");
		s = cJSON_IsNumber(seq) ? (uint64_t)seq->valuedouble : 0;
		/* Doubling: a realloc per message is quadratic where realloc always copies (ASan).
		 */
		if (out->nmessages == 0 ||
		    (out->nmessages >= 64 && (out->nmessages & (out->nmessages - 1)) == 0)) {
			size_t cap = out->nmessages ? out->nmessages * 2 : 64;

			out->seqs = realloc(out->seqs, cap * sizeof(*out->seqs));
			out->boots = realloc(out->boots, cap * sizeof(*out->boots));
		}
		boot = cJSON_GetObjectItemCaseSensitive(doc, "boot");
		snprintf(out->boots[out->nmessages], sizeof(out->boots[0]), "%s",
			 cJSON_IsString(boot) ? boot->valuestring : "");
		out->seqs[out->nmessages++] = s;
		points = cJSON_GetObjectItemCaseSensitive(doc, "points");
		cJSON_ArrayForEach (p, points) {
			add_point(out, p, s);
		}
		cJSON_Delete(doc);
	}
	free(text);
}

void h_telemetry_free(struct h_telemetry *t)
{
	free(t->points);
	free(t->seqs);
	free(t->boots);
	memset(t, 0, sizeof(*t));
}

const struct h_point *h_telemetry_last(const struct h_telemetry *t, const char *name)
{
	for (size_t i = t->npoints; i-- > 0;) {
		if (strcmp(t->points[i].name, name) == 0)
			return &t->points[i];
	}
	return NULL;
}

size_t h_telemetry_count(const struct h_telemetry *t, const char *name, const char *quality)
{
	size_t n = 0;

	for (size_t i = 0; i < t->npoints; i++) {
		if (strcmp(t->points[i].name, name) == 0 &&
		    (quality == NULL || strcmp(t->points[i].quality, quality) == 0))
			n++;
	}
	return n;
}

/*
 * CPU time of every thread of 'pid' in nanoseconds (the first field of each
 * /proc/<pid>/task/<tid>/schedstat): clock ticks are 10 ms, too coarse for a
 * process that uses a fraction of a percent.
 */
long long h_cpu_ns(pid_t pid)
{
	char path[64];
	long long total = 0;
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		char stat[352];
		long long ns = 0;
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(stat, sizeof(stat), "%s/%s/schedstat", path, e->d_name);
		f = fopen(stat, "r");
		if (f == NULL)
			continue;
		if (fscanf(f, "%lld", &ns) == 1)
			total += ns;
		fclose(f);
	}
	closedir(d);
	return total;
}

/* A field of /proc/<pid>/status in kB (VmHWM, VmRSS). */
long h_status_kb(pid_t pid, const char *field)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, field, strlen(field)) == 0 && line[strlen(field)] == ':')
			kb = atol(line + strlen(field) + 1);
	}
	fclose(f);
	return kb;
}

/* Reads /proc/<pid>/<what> into 'buf', NUL-terminated; returns its length, or -1. */
static ssize_t proc_read(const char *pid, const char *what, char *buf, size_t cap)
{
	char path[300];
	size_t len;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%s/%s", pid, what);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	len = fread(buf, 1, cap - 1, f);
	fclose(f);
	buf[len] = '\0';
	return (ssize_t)len;
}

/* The words of /proc/<pid>/cmdline, up to 'max', into 'args' (pointing into 'buf'); returns how
 * many (0 if the process is gone). */
static int proc_args(const char *pid, char *buf, size_t cap, const char **args, int max)
{
	ssize_t len = proc_read(pid, "cmdline", buf, cap);
	int n = 0;

	for (size_t at = 0; len > 0 && at < (size_t)len && n < max; at += strlen(buf + at) + 1)
		args[n++] = buf + at;
	return n;
}

/* A field of /proc/<pid>/status up to the first of 'stop' into 'out'; returns 'out' ("" if
 * absent). */
static const char *proc_status(pid_t pid, const char *field, const char *stop, char *out,
			       size_t cap)
{
	char path[64], key[64], *text;
	const char *at;

	out[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	text = h_read(path);
	if (text == NULL)
		return out;
	snprintf(key, sizeof(key), "\n%s:", field);
	at = strstr(text, key);
	if (at != NULL) {
		at += strlen(key);
		at += strspn(at, " \t");
		snprintf(out, cap, "%.*s", (int)strcspn(at, stop), at);
	}
	free(text);
	return out;
}

const char *h_proc_status(pid_t pid, const char *field, char *out, size_t cap)
{
	return proc_status(pid, field, " \t\n", out, cap);
}

const char *h_proc_status_line(pid_t pid, const char *field, char *out, size_t cap)
{
	return proc_status(pid, field, "\n", out, cap);
}

/* One look for h_child_process: the pid, 0 if there is none, -1 if /proc cannot be listed. */
static pid_t child_process_once(pid_t parent, const char *subcommand, const char *adapter,
				pid_t not_this)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t found = 0;

	if (d == NULL)
		return -1;
	while (found == 0 && (e = readdir(d)) != NULL) {
		char buf[4096], state;
		const char *args[6] = { 0 };
		int ppid = 0, n;

		if (e->d_name[0] < '1' || e->d_name[0] > '9' || atoi(e->d_name) == not_this)
			continue;
		if (proc_read(e->d_name, "stat", buf, sizeof(buf)) < 0 ||
		    strrchr(buf, ')') == NULL ||
		    sscanf(strrchr(buf, ')') + 1, " %c %d", &state, &ppid) != 2 || ppid != parent ||
		    state == 'Z')
			continue;
		n = proc_args(e->d_name, buf, sizeof(buf), args, 6);
		if (n >= 2 && strcmp(args[1], subcommand) == 0 &&
		    (adapter == NULL || (n == 6 && strcmp(args[4], adapter) == 0)))
			found = (pid_t)atoi(e->d_name);
	}
	closedir(d);
	return found;
}

pid_t h_child_process(pid_t parent, const char *subcommand, const char *adapter, pid_t not_this,
		      int timeout_ms)
{
	int64_t end = h_ms() + timeout_ms;
	pid_t p;

	while ((p = child_process_once(parent, subcommand, adapter, not_this)) == 0) {
		if (h_ms() >= end)
			return 0;
		h_sleep_ms(50);
	}
	return p;
}

bool h_process_runs(pid_t pid, const char *subcommand)
{
	char name[16], buf[4096];
	const char *args[2];

	snprintf(name, sizeof(name), "%d", (int)pid);
	return proc_args(name, buf, sizeof(buf), args, 2) == 2 && strcmp(args[1], subcommand) == 0;
}

bool h_gone(pid_t pid, int timeout_ms)
{
	int64_t end = h_ms() + timeout_ms;
	char state[64];

	for (;;) {
		h_proc_status(pid, "State", state, sizeof(state));
		if (state[0] == '\0' || state[0] == 'Z')
			return true;
		if (h_ms() >= end)
			return false;
		h_sleep_ms(50);
	}
}

/*
 * Counts the points of messages stamped within [from_ms, to_ms) (UTC), so the
 * window is exact whatever the delivery delay. Each line is "topic {json}";
 * the message's own "ts" follows its "seq".
 */
void h_count_points(const char *file, int64_t from_ms, int64_t to_ms, unsigned long long *points,
		    unsigned long long *msgs)
{
	static const char needle[] = "{\"name\":";
	char *text = h_read(file);
	char *save = NULL;

	*points = *msgs = 0;
	for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char *ts = strstr(line, "\"ts\":");
		long long t = ts ? atoll(ts + 5) : 0;

		if (t < from_ms || t >= to_ms)
			continue;
		(*msgs)++;
		for (char *q = line; (q = strstr(q, needle)) != NULL; q += sizeof(needle) - 1)
			(*points)++;
	}
	free(text);
}

/* UTC milliseconds. */
int64_t h_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- attested telemetry: service, two-listener broker, PLC ------------------------------- */

static int step(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Runs one setup command, its output appended to steps.log. 0 or -1. */
static int step(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (h_sh("%s >>%s 2>&1", cmd, h_path("steps.log")) == 0)
		return 0;
	FILE *log = fopen(h_path("steps.log"), "a");

	if (log != NULL) {
		fprintf(log, "setup: this step failed: %s\n", cmd);
		fclose(log);
	}
	return -1;
}

int h_attest_up(struct h_attest *b, int lifetime_s)
{
	const char *argv[] = { "mosquitto", "-c", NULL, NULL };
	char conf[300], args[64];

	memset(b, 0, sizeof(*b));
	b->aport = h_free_port();
	b->tport = h_free_port();
	b->mport = h_free_port();
	snprintf(b->svc, sizeof(b->svc), "%s", h_path("svc"));
	snprintf(b->brk, sizeof(b->brk), "%s", h_path("brk"));
	snprintf(b->state, sizeof(b->state), "%s", h_path("state"));
	if (step("%s/guardian-service init -d %s --broker localhost:%d --broker-ca %s/ca.crt",
		 h_build(), b->svc, b->aport, h_path("pki")) != 0 ||
	    step("sed -i 's/\"lifetime_s\":[[:space:]]*[0-9]*/\"lifetime_s\":%d/' %s/service.json",
		 lifetime_s, b->svc) != 0 ||
	    step("sh %s/tools/attest-broker.sh %s %d %d %s %s", h_src(), b->brk, b->aport, b->tport,
		 h_path("pki"), b->svc) != 0)
		return -1;
	snprintf(conf, sizeof(conf), "%s/mosquitto.conf", b->brk);
	argv[2] = conf;
	b->broker = h_spawn(h_path("mosquitto.log"), argv);
	if (b->broker <= 0 || h_wait_port(b->aport, 10000) != 0 ||
	    h_wait_port(b->tport, 10000) != 0) {
		step("echo 'setup: mosquitto did not listen on %d and %d within 10 s; its log:'; "
		     "cat %s",
		     b->aport, b->tport, h_path("mosquitto.log"));
		return -1;
	}
	snprintf(args, sizeof(args), "--tcp 127.0.0.1:%d --step-ms 100", b->mport);
	if (h_plcsim(args, h_path("plcsim.log")) <= 0) {
		step("echo 'setup: plcsim did not get ready on %d; its log:'; cat %s", b->mport,
		     h_path("plcsim.log"));
		return -1;
	}
	return 0;
}

void h_attest_site(struct h_attest *b, const char *device, const char *policy_tail)
{
	char text[4096];

	snprintf(text, sizeof(text),
		 "{\"version\":1,\"connections\":[\"localhost:%d\"],\"uplink\":"
		 "[{\"points\":\"press/*\",\"action\":\"allow\"}]}%s",
		 b->tport, policy_tail);
	h_write(h_path("policy.json"), text);
	snprintf(text, sizeof(text),
		 "{\"device_id\":\"%s\",\"policy\":\"policy.json\",\"state_dir\":\"%s\","
		 "\"attestation\":{\"host\":\"localhost\",\"port\":%d,\"ca_file\":\"pki/ca.crt\","
		 "\"timeout_ms\":5000,\"retry_min_ms\":500,\"retry_max_ms\":2000},"
		 "\"uplink\":{\"host\":\"localhost\",\"port\":%d,\"ca_file\":\"pki/ca.crt\","
		 "\"reconnect_min_ms\":200,\"reconnect_max_ms\":1000,\"health_interval_ms\":1000},"
		 "\"adapters\":[{\"name\":\"press\",\"type\":\"modbus-tcp\",\"host\":\"127.0.0.1\","
		 "\"port\":%d,\"poll_interval_ms\":100,\"points\":[{\"name\":\"counter\","
		 "\"address\":0}]}]}",
		 device, b->state, b->aport, b->tport, b->mport);
	h_write(h_path("site.json"), text);
	snprintf(b->site, sizeof(b->site), "%s", h_path("site.json"));
}

int h_attest_enroll(struct h_attest *b)
{
	if (step("%s/guardian provision -c %s", h_build(), b->site) != 0 ||
	    step("%s/guardian-service enroll -d %s %s/identity.csr -o %s/identity.crt", h_build(),
		 b->svc, b->state, b->state) != 0)
		return -1;
	if (h_sh("%s/guardian measure -c %s --json >%s 2>>%s", h_build(), b->site,
		 h_path("reference.json"), h_path("steps.log")) != 0)
		return -1;
	return step("%s/guardian-service reference add -d %s %s", h_build(), b->svc,
		    h_path("reference.json"));
}

int h_attest_serve(struct h_attest *b)
{
	char cmd[512];
	const char *argv[] = { "/bin/sh", "-c", cmd, NULL };

	snprintf(cmd, sizeof(cmd), "exec %s/guardian-service serve -d %s", h_build(), b->svc);
	b->service = h_spawn(h_path("service.log"), argv);
	if (b->service <= 0 || h_wait_contains(h_path("service.log"), "ready", 10000) != 0)
		return -1;
	return 0;
}

/* ---- swtpm: a software TPM 2.0 ------------------------------------------------------------ */

bool h_have_swtpm(void)
{
	return h_sh("command -v swtpm >/dev/null 2>&1") == 0;
}

const char *h_swtpm_missing(void)
{
	if (h_have_swtpm())
		return NULL;
	return "swtpm is not installed (apt install swtpm): this test needs a TPM 2.0 and skips";
}

const char *h_swtpm_tcti(int port)
{
	static char bufs[4][64];
	static unsigned next;
	char *b = bufs[next++ % 4];

	snprintf(b, sizeof(bufs[0]), "swtpm:host=127.0.0.1,port=%d", port);
	return b;
}

/* Whether 127.0.0.1:port can be bound now. */
static bool port_free(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;

	if (fd >= 0)
		close(fd);
	return ok;
}

pid_t h_swtpm(int *port)
{
	char state[300], server[128], ctrl[128];
	pid_t pid;
	int p = -1;

	if (!h_have_swtpm())
		return 0;
	/* The TCTI takes the control channel at port + 1: both must be free. */
	for (int tries = 0; tries < 32 && p < 0; tries++) {
		int candidate = h_free_port();

		if (candidate > 0 && candidate < 65535 && port_free(candidate + 1))
			p = candidate;
	}
	if (p < 0)
		return -1;
	snprintf(state, sizeof(state), "%s/swtpm-%d", h_dir(), p);
	if (mkdir(state, 0700) != 0)
		return -1;
	snprintf(server, sizeof(server), "type=tcp,port=%d,bindaddr=127.0.0.1", p);
	snprintf(ctrl, sizeof(ctrl), "type=tcp,port=%d,bindaddr=127.0.0.1", p + 1);
	{
		char dir[320];
		const char *argv[] = { "swtpm",
				       "socket",
				       "--tpm2",
				       "--tpmstate",
				       dir,
				       "--server",
				       server,
				       "--ctrl",
				       ctrl,
				       "--flags",
				       "not-need-init,startup-clear",
				       NULL };

		snprintf(dir, sizeof(dir), "dir=%s", state);
		pid = h_spawn(h_path("swtpm.log"), argv);
	}
	if (pid > 0 && (h_wait_port(p + 1, 10000) != 0 || h_wait_port(p, 10000) != 0)) {
		h_stop(pid, 1000);
		return -1;
	}
	*port = p;
	return pid;
}

int h_attest_enroll_tpm(struct h_attest *b, int tpm_port, bool with_ak)
{
	if (step("sed -i 's|\"attestation\":{|\"attestation\":{\"tpm\":{\"tcti\":\"%s\"},|' %s && "
		 "grep -q tcti %s",
		 h_swtpm_tcti(tpm_port), b->site, b->site) != 0 ||
	    step("%s/guardian provision -c %s", h_build(), b->site) != 0 ||
	    step("test -s %s/identity-ak.pem && test -s %s/identity-ak.tpm", b->state, b->state) !=
		    0 ||
	    step("%s/guardian-service enroll -d %s %s/identity.csr -o %s/identity.crt%s%s%s",
		 h_build(), b->svc, b->state, b->state, with_ak ? " --ak " : "",
		 with_ak ? b->state : "", with_ak ? "/identity-ak.pem" : "") != 0)
		return -1;
	if (h_sh("%s/guardian measure -c %s --json >%s 2>>%s", h_build(), b->site,
		 h_path("reference.json"), h_path("steps.log")) != 0)
		return -1;
	return step("%s/guardian-service reference add -d %s %s", h_build(), b->svc,
		    h_path("reference.json"));
}

pid_t h_guardian_launched(const char *program, const char *config, const char *logfile)
{
	char launcher[300], bin[300];
	const char *argv[] = { launcher, "--", bin, "run", "-c", config, NULL };

	snprintf(launcher, sizeof(launcher), "%s/guardian-launch", h_build());
	snprintf(bin, sizeof(bin), "%s/%s", h_build(), program);
	return h_spawn(logfile, argv);
}
