/* launch_probe.c: what tests/integration/test_launch.c starts under guardian-launch instead of
 * guardian: it asks the broker for LOG, QUOTE and PUBKEY and writes the answers out. Also makes
 * an AK blob (provision) and reads a PCR (pcrread) for the test, as guardian provision would.
 *
 *   launch-probe run -c CONFIG [--out DIR] [--wait] [--exit N]   (under guardian-launch)
 *   launch-probe provision TCTI BLOB
 *   launch-probe pcrread TCTI PCR
 */
#include <dirent.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../base/base.h"
#include "../../tpm/broker.h"
#include "../../tpm/tpm.h"

/* The qualifying bytes of the probe's quote: 0, 1, ..., 31. */
static void qualifying(uint8_t q[32])
{
	for (int i = 0; i < 32; i++)
		q[i] = (uint8_t)i;
}

static int write_out(const char *dir, const char *name, const void *data, size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(data, 1, n, f) != n) {
		perror(path);
		if (f != NULL)
			fclose(f);
		return -1;
	}
	return fclose(f);
}

static int provision(const char *tcti, const char *path)
{
	struct gd_tpm *t = NULL;
	uint8_t *blob = NULL;
	size_t len = 0;
	char why[512];
	int rc = 1;

	if (gd_tpm_open(tcti, &t, why, sizeof(why)) != 0 ||
	    gd_tpm_ak_create(t, &blob, &len, why, sizeof(why)) != 0) {
		fprintf(stderr, "probe: %s\n", why);
		goto out;
	}
	rc = gd_write_file_atomic(path, blob, len, 0600) == 0 ? 0 : 1;
out:
	free(blob);
	gd_tpm_close(t);
	return rc;
}

static int pcrread(const char *tcti, int pcr)
{
	struct gd_tpm *t = NULL;
	uint8_t value[32];
	char why[512], hex[65];
	int rc = 1;

	if (gd_tpm_open(tcti, &t, why, sizeof(why)) != 0 ||
	    gd_tpm_pcr_read(t, pcr, value, why, sizeof(why)) != 0) {
		fprintf(stderr, "probe: %s\n", why);
	} else {
		gd_hex_encode(value, 32, hex);
		printf("%s\n", hex);
		rc = 0;
	}
	gd_tpm_close(t);
	return rc;
}

/* Who it runs as and which descriptors it holds (the broker's only, besides stdio). */
static void print_self(void)
{
	gid_t groups[64];
	int n = getgroups(64, groups);
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	printf("probe: pid %d uid %d gid %d groups", (int)getpid(), (int)getuid(), (int)getgid());
	for (int i = 0; i < n; i++)
		printf(" %d", (int)groups[i]);
	printf("\nprobe: fds");
	while (d != NULL && (e = readdir(d)) != NULL) {
		if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d))
			printf(" %s", e->d_name);
	}
	printf("\n");
	if (d != NULL)
		closedir(d);
}

static int as_launched(int argc, char **argv)
{
	struct gd_broker_req req = { .type = GD_BROKER_LOG };
	struct gd_broker_resp *resp = calloc(1, sizeof(*resp));
	const char *out = NULL;
	bool wait = false;
	int code = 0, fd;
	char why[512];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
			out = argv[++i];
		else if (strcmp(argv[i], "--wait") == 0)
			wait = true;
		else if (strcmp(argv[i], "--exit") == 0 && i + 1 < argc)
			code = atoi(argv[++i]);
	}
	print_self();
	fd = gd_broker_fd_from_env();
	if (fd < 0 || resp == NULL) {
		printf("probe: no broker\n");
		return 3;
	}
	if (gd_broker_call(fd, &req, resp, why, sizeof(why)) != 0) {
		printf("probe: LOG: %s\n", why);
		return 4;
	}
	if (out != NULL) {
		char *json = meas_log_json(&resp->log);

		if (json == NULL || write_out(out, "log.json", json, strlen(json)) != 0)
			return 5;
		free(json);
	}
	req = (struct gd_broker_req){ .type = GD_BROKER_QUOTE };
	qualifying(req.qualifying);
	if (gd_broker_call(fd, &req, resp, why, sizeof(why)) != 0) {
		printf("probe: QUOTE: %s\n", why);
		return 4;
	}
	if (out != NULL && (write_out(out, "attest.bin", resp->attest, resp->attest_len) != 0 ||
			    write_out(out, "sig.der", resp->sig, resp->sig_len) != 0))
		return 5;
	req = (struct gd_broker_req){ .type = GD_BROKER_PUBKEY };
	if (gd_broker_call(fd, &req, resp, why, sizeof(why)) != 0) {
		printf("probe: PUBKEY: %s\n", why);
		return 4;
	}
	if (out != NULL && write_out(out, "ak.pem", resp->pem, strlen(resp->pem)) != 0)
		return 5;
	free(resp);
	printf("probe: answered\n");
	fflush(stdout);
	while (wait)
		pause();
	return code;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 4 && strcmp(argv[1], "provision") == 0)
		return provision(argv[2], argv[3]);
	if (argc == 4 && strcmp(argv[1], "pcrread") == 0)
		return pcrread(argv[2], atoi(argv[3]));
	return as_launched(argc, argv);
}
