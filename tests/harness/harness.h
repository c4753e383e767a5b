/* harness.h: starts and stops real parts for integration tests and benchmarks: broker, simulator,
 * guardian, pty pairs. */
#ifndef HARNESS_H
#define HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * Every process started here is registered and gets SIGKILL if the test
 * process dies (PR_SET_PDEATHSIG); h_cleanup() stops them all (SIGTERM, then
 * SIGKILL) and removes the work directory. Call it from a test's .fini.
 */

/* Creates the work directory (/tmp/gd-test-XXXXXX) once per process; returns it. */
const char *h_dir(void);
/* A path inside the work directory, in one of 8 rotating static buffers: copy it to keep it. */
const char *h_path(const char *name);
/* The build directory ($GUARDIAN_BUILD, else "build") and the source root ($GUARDIAN_SRC, else
 * "."). */
const char *h_build(void);
const char *h_src(void);

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int h_free_port(void);
/* Waits until 127.0.0.1:port accepts a connection. 0 or -1 on timeout. */
int h_wait_port(int port, int timeout_ms);

/* Starts argv[0] with stdout and stderr appended to 'logfile'. Returns the pid or -1. */
pid_t h_spawn(const char *logfile, const char *const argv[]);
/* SIGTERM, wait up to 'timeout_ms', then SIGKILL. Returns the exit status (as waitpid) or -1. */
int h_stop(pid_t pid, int timeout_ms);
/* Waits up to 'timeout_ms' for 'pid' to exit by itself. Returns its status (as waitpid), or -1
 * if it still runs (it stays registered for h_cleanup). */
int h_wait_exit(pid_t pid, int timeout_ms);
/*
 * Stops every process started and removes the work directory. If any log in
 * it holds a sanitizer report (make check builds the children with ASan and
 * UBSan, make tsan with TSan), prints the reports on stderr and aborts: called
 * from a suite's .fini, only a crash fails the run, as Criterion ignores
 * assertions there. Returns 0 otherwise.
 */
int h_cleanup(void);

/* Runs a shell command; returns its exit status (0 = success). */
int h_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Writes 'text' to 'path'. */
void h_write(const char *path, const char *text);
/* Reads a whole file (caller frees), or NULL. */
char *h_read(const char *path);
/* Waits until 'path' contains 'needle'. 0 or -1 on timeout. */
int h_wait_contains(const char *path, const char *needle, int timeout_ms);
/* Waits until 'path' contains 'needle' at least 'n' times. 0 or -1 on timeout. */
int h_wait_count(const char *path, const char *needle, size_t n, int timeout_ms);
/* Counts occurrences of 'needle' in the file. */
size_t h_count(const char *path, const char *needle);

/* The demo PKI (tools/pki.sh) in <dir>/pki for 'device_id'. 0 or -1. */
int h_pki(const char *device_id);

/*
 * mosquitto on 127.0.0.1:port, TLS with client certificates from the demo
 * CA, persistence in the work directory (so an offline subscriber session
 * survives a broker restart). Returns the pid or -1.
 */
pid_t h_mosquitto(int port);

/*
 * mosquitto_sub as the viewer, QoS 1, "topic payload" lines into 'outfile'
 * (with its debug lines, which start with "Client "). Returns once the broker
 * has acknowledged the subscription, or -1. 'topic' may list several filters,
 * separated by spaces.
 */
pid_t h_subscribe(int port, const char *topic, const char *outfile, bool persistent_session);

/*
 * The same with another client certificate: <cert_prefix>.crt and .key
 * (verified against pki/ca.crt's broker), and client id 'client_id' (NULL: a
 * random one; required for a persistent session).
 */
pid_t h_subscribe_as(int port, const char *topic, const char *outfile, const char *cert_prefix,
		     const char *client_id, bool persistent_session);

/* mosquitto_pub as the viewer, QoS 1; returns when the broker has it: 0, or its exit status. */
int h_publish(int port, const char *topic, const char *payload);

/* The PLC simulator; 'args' is extra arguments split on spaces. Waits for "ready". */
pid_t h_plcsim(const char *args, const char *logfile);

/* A pseudo-terminal pair linked at 'a' and 'b' (socat). Waits for both links. */
pid_t h_pty_pair(const char *a, const char *b);

/* guardian run -c 'config'. */
pid_t h_guardian(const char *config, const char *logfile);

/*
 * Telemetry messages received by a subscriber, parsed from its output file.
 * Each point: name, value as text ("null" for none), quality, seq of its message.
 */
struct h_point {
	char name[96];
	char value[96];
	char quality[24];
	char unit[24];
	uint64_t seq;
	int64_t ts;
};
struct h_telemetry {
	struct h_point *points;
	size_t npoints;
	size_t nmessages;
	uint64_t *seqs;	   /* message sequence numbers in arrival order */
	char (*boots)[32]; /* each message's boot id, the same way ("" if it had none) */
};
/* Parses every telemetry line of 'file'. */
void h_telemetry_read(const char *file, struct h_telemetry *out);
void h_telemetry_free(struct h_telemetry *t);
/* The last value (text) of 'name', or NULL if it never arrived. */
const struct h_point *h_telemetry_last(const struct h_telemetry *t, const char *name);
size_t h_telemetry_count(const struct h_telemetry *t, const char *name, const char *quality);

/* Monotonic milliseconds, and sleeping. */
int64_t h_ms(void);
void h_sleep_ms(int ms);

/* For benchmarks. CPU time of every thread of 'pid' in ns (from schedstat); -1 if gone. */
long long h_cpu_ns(pid_t pid);
/* A field of /proc/<pid>/status in kB (VmHWM, VmRSS); -1 if absent. */
long h_status_kb(pid_t pid, const char *field);
/*
 * What /proc says of a process, for the sandbox and compartment suites. A field of
 * /proc/<pid>/status ("CapEff", "Seccomp", "State"): h_proc_status copies its first word into
 * 'out', h_proc_status_line the whole rest of its line, tabs and all ("Uid": real, effective,
 * saved, file system). Both return 'out', "" when the field or the process is absent.
 */
const char *h_proc_status(pid_t pid, const char *field, char *out, size_t cap);
const char *h_proc_status_line(pid_t pid, const char *field, char *out, size_t cap);
/*
 * Waits up to 'timeout_ms' (0: looks once) for a live child of 'parent' other than 'not_this'
 * (0: any) whose cmdline's argv[1] is 'subcommand' ("adapter-child", "uplink-child") and, unless
 * 'adapter' is NULL, whose argv[4] is 'adapter' (guardian adapter-child FILE INDEX NAME SHA256).
 * Returns its pid, 0 if none came, or -1 if /proc cannot be listed.
 */
pid_t h_child_process(pid_t parent, const char *subcommand, const char *adapter, pid_t not_this,
		      int timeout_ms);
/* Whether 'pid' runs 'subcommand' (its cmdline's argv[1]). */
bool h_process_runs(pid_t pid, const char *subcommand);
/* Whether 'pid' is gone, or a zombie nobody waits for yet, within 'timeout_ms'. */
bool h_gone(pid_t pid, int timeout_ms);
/* UTC milliseconds. */
int64_t h_wall_ms(void);
/* Points and messages in a subscriber's file whose message "ts" lies in [from_ms, to_ms). */
void h_count_points(const char *file, int64_t from_ms, int64_t to_ms, unsigned long long *points,
		    unsigned long long *msgs);

/*
 * Attested telemetry, for tests and benchmarks: guardian-service's directory
 * (svc), mosquitto with an attestation listener (aport) and a telemetry
 * listener (tport) from tools/attest-broker.sh (brk), and plcsim on mport.
 * Setup commands log to steps.log; each step returns 0 or -1.
 */
struct h_attest {
	int aport, tport, mport;
	char svc[256], brk[256], state[256], site[256];
	pid_t broker, service, gd;
};
/* Needs h_pki first. lifetime_s: of operational certificates. */
int h_attest_up(struct h_attest *b, int lifetime_s);
/* site.json and policy.json for 'device' (press/counter, 100 ms); 'policy_tail' is appended to
 * the policy file (" " changes it by one byte). */
void h_attest_site(struct h_attest *b, const char *device, const char *policy_tail);
/* guardian provision, guardian-service enroll, guardian measure, reference add. */
int h_attest_enroll(struct h_attest *b);
/* guardian-service serve, until it says it is ready. */
int h_attest_serve(struct h_attest *b);

/*
 * A software TPM 2.0 (swtpm) on 127.0.0.1: commands on *port, its control channel on *port + 1
 * (the swtpm TCTI's rule), state in a directory of its own under h_dir(), output appended to
 * h_path("swtpm.log"); registered like every child, so h_cleanup() stops it. Returns its pid,
 * 0 when swtpm is not installed (skip the test with h_swtpm_missing()), or -1 when it did not
 * start.
 */
pid_t h_swtpm(int *port);
/* The TCTI string for it, "swtpm:host=127.0.0.1,port=N" (one of 4 rotating static buffers). */
const char *h_swtpm_tcti(int port);
/* Whether swtpm is on the PATH. */
bool h_have_swtpm(void);
/* NULL when swtpm is installed, else why a test skips: "swtpm is not installed (apt install
 * swtpm): ...". */
const char *h_swtpm_missing(void);
/*
 * The attested bed in TPM mode (after h_attest_up and h_attest_site): attestation.tpm names the
 * swtpm on 'tpm_port'; guardian provision makes the AK in it; the device is enrolled with the AK
 * (--ak) unless 'with_ak' is false; guardian measure's log is the reference. 0 or -1 (steps.log).
 */
int h_attest_enroll_tpm(struct h_attest *b, int tpm_port, bool with_ak);
/* guardian-launch starting $GUARDIAN_BUILD/'program' (guardian, or a test's stand-in) with
 * "run -c config"; output into 'logfile'. */
pid_t h_guardian_launched(const char *program, const char *config, const char *logfile);

/* In a Criterion test: skips it, saying why, when swtpm is missing. */
#define H_NEED_SWTPM()                                                                             \
	do {                                                                                       \
		if (!h_have_swtpm())                                                               \
			cr_skip_test("%s", h_swtpm_missing());                                     \
	} while (0)

/*
 * A fleet bed (fleet.c): guardian-service's directory <name>-svc in the work directory, made by
 * `init` with 'init_args' (e.g. "--store sqlite"; NULL for none); mosquitto on 'port' with one
 * test-only TLS listener on loopback without per-device ACLs (fleetsim's devices share
 * connections); up to H_FLEET_MAX `serve` instances on the directory. Setup commands log to
 * 'steps'. Every process is registered: h_cleanup() stops what h_fleet_down() did not.
 */
#define H_FLEET_MAX 8
struct h_fleet {
	char name[32], svc[256], pki[256], steps[320];
	int port;
	pid_t broker;
	pid_t serve[H_FLEET_MAX];
	char serve_log[H_FLEET_MAX][320];
	int nserve;
};
/* Needs nothing before it (makes the demo PKI for the broker's certificate). 0 or -1. */
int h_fleet_up(struct h_fleet *f, const char *name, const char *init_args);
/* Starts 'n' more `serve` instances, each until it says it is ready. 0 or -1. */
int h_fleet_serve(struct h_fleet *f, int n);
/* Runs $GUARDIAN_BUILD/fleetsim on the bed with 'args' (split on spaces), its output into
 * 'outfile', up to 'timeout_ms'. Its exit status, or -1 (it was stopped). */
int h_fleet_run(struct h_fleet *f, const char *args, const char *outfile, int timeout_ms);
/* A figure of fleetsim's "fleetsim-result:" line in 'outfile' ("ok", "rate", ...), or -1. */
double h_fleet_result(const char *outfile, const char *key);
/* How many certificates instance 'i' issued (its log's decisions). */
size_t h_fleet_answered(const struct h_fleet *f, int i);
/* Stops the instances and the broker. */
void h_fleet_down(struct h_fleet *f);

#endif
