/* revoke.c: revocation of operational certificates: what each device was issued and what was
 * revoked (kept in the store), the CRL made of it and the broker told to reload it. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/x509_crl.h>

#include "service.h"

/* The store's reason for ours, and back. */
static enum store_revoke_reason store_reason(enum revoke_reason r)
{
	return r == REVOKE_SUPERSEDED ? STORE_REVOKE_SUPERSEDED : STORE_REVOKE_REFUSED;
}

static const char *reason_word(enum revoke_reason r)
{
	return r == REVOKE_SUPERSEDED ? "superseded" : "refused";
}

/* After 'revoked' certificates of 'dev' were revoked: the CRL is stale, and the log says so. */
static void revoked_note(struct service *s, const char *dev, int revoked, enum revoke_reason r)
{
	if (revoked <= 0)
		return;
	s->crl_stale = true;
	log_info(SERVICE_SUBSYS, "%s: %d certificate%s revoked (%s)", dev, revoked,
		 revoked == 1 ? "" : "s", reason_word(r));
}

int revoke_record_issued(struct service *s, const char *dev,
			 const uint8_t serial[SERVICE_SERIAL_LEN], int64_t not_after_s)
{
	char why[512];
	int rc = store_cert_issued(s->store, dev, serial, not_after_s, s->now_ms() / 1000, why,
				   sizeof(why));

	if (rc < 0) {
		log_warnx(SERVICE_SUBSYS, "%s", why);
		return rc;
	}
	revoked_note(s, dev, rc, REVOKE_SUPERSEDED);
	return 0;
}

int revoke_device(struct service *s, const char *dev, enum revoke_reason reason)
{
	char why[512];
	int rc = store_cert_revoke_device(s->store, dev, store_reason(reason), s->now_ms() / 1000,
					  why, sizeof(why));

	if (rc < 0) {
		log_warnx(SERVICE_SUBSYS, "%s", why);
		return rc;
	}
	revoked_note(s, dev, rc, reason);
	return rc;
}

int revoke_record_decision(struct service *s, const struct store_attest *a, bool *duplicate,
			   char *why, size_t cap)
{
	int revoked = 0, rc = store_attest_record(s->store, a, duplicate, &revoked, why, cap);

	if (rc == 0)
		revoked_note(s, a->dev, revoked, a->issued ? REVOKE_SUPERSEDED : REVOKE_REFUSED);
	return rc;
}

static int by_serial(const void *a, const void *b)
{
	return memcmp(((const struct crl_entry *)a)->serial, ((const struct crl_entry *)b)->serial,
		      SERVICE_SERIAL_LEN);
}

int revoke_publish(struct service *s)
{
	struct store_revoked *revoked = NULL;
	struct crl_entry *list = NULL;
	char path[4096], why[512];
	size_t n = 0;
	int rc;

	snprintf(path, sizeof(path), "%s/%s", s->dir, SERVICE_CRL_FILE);
	rc = store_cert_revoked(s->store, s->now_ms() / 1000, &revoked, &n, why, sizeof(why));
	if (rc != 0) {
		log_warnx(SERVICE_SUBSYS, "%s", why);
		return rc < 0 ? rc : GD_EIO;
	}
	if (n > 0) {
		list = calloc(n, sizeof(*list));
		if (list == NULL) {
			free(revoked);
			return GD_ENOMEM;
		}
	}
	for (size_t i = 0; i < n; i++) {
		memcpy(list[i].serial, revoked[i].serial, SERVICE_SERIAL_LEN);
		list[i].revoked_s = revoked[i].revoked_s;
		list[i].reason = revoked[i].reason == STORE_REVOKE_SUPERSEDED ? REVOKE_SUPERSEDED
									      : REVOKE_REFUSED;
	}
	free(revoked);
	/* Listed by serial, as before the store: the same records make the same CRL. */
	if (n > 1)
		qsort(list, n, sizeof(*list), by_serial);
	rc = crl_write(path, &s->op_ca.crt, &s->op_ca.key, &s->drbg, list, n, s->now_ms(), why,
		       sizeof(why));
	free(list);
	if (rc != 0) {
		log_warnx(SERVICE_SUBSYS, "%s", why);
		return GD_EIO;
	}
	s->crl_stale = false;
	log_info(SERVICE_SUBSYS, "%s written: %zu certificate%s revoked, next update in %d h", path,
		 n, n == 1 ? "" : "s", SERVICE_CRL_VALID_S / 3600);
	revoke_reload_broker(s);
	return (int)n;
}

int revoke_refresh(struct service *s)
{
	mbedtls_x509_crl crl;
	char path[4096];
	bool fresh = false;

	snprintf(path, sizeof(path), "%s/%s", s->dir, SERVICE_CRL_FILE);
	mbedtls_x509_crl_init(&crl);
	if (mbedtls_x509_crl_parse_file(&crl, path) == 0) {
		struct tm tm = { .tm_year = crl.next_update.year - 1900,
				 .tm_mon = crl.next_update.mon - 1,
				 .tm_mday = crl.next_update.day,
				 .tm_hour = crl.next_update.hour,
				 .tm_min = crl.next_update.min,
				 .tm_sec = crl.next_update.sec };

		fresh = (int64_t)timegm(&tm) - s->now_ms() / 1000 >= SERVICE_CRL_REFRESH_S;
	}
	mbedtls_x509_crl_free(&crl);
	if (fresh)
		return 0;
	return revoke_publish(s) < 0 ? GD_EIO : 1;
}

long revoke_reload_broker(struct service *s)
{
	const char *file = s->cfg.broker_pid_file;
	char proc[64], *text, *comm, *end;
	bool bad;
	long pid;

	if (file == NULL)
		return 0;
	text = gd_read_file(file);
	if (text == NULL) {
		log_warn(SERVICE_SUBSYS,
			 "broker_pid_file %s: cannot read; the broker keeps its old CRL", file);
		return 0;
	}
	errno = 0;
	pid = strtol(text, &end, 10);
	bad = errno != 0 || end == text || pid <= 1 || (*end != '\0' && *end != '\n');
	free(text);
	if (bad) {
		log_warnx(SERVICE_SUBSYS, "broker_pid_file %s: no process id in it", file);
		return 0;
	}
	/* A stale file may name a process that is not the broker any more: never signal that. */
	snprintf(proc, sizeof(proc), "/proc/%ld/comm", pid);
	comm = gd_read_file(proc);
	if (comm == NULL || strncmp(comm, "mosquitto", 9) != 0) {
		log_warnx(SERVICE_SUBSYS,
			  "broker_pid_file %s: process %ld is %s; the broker keeps its old CRL",
			  file, pid, comm == NULL ? "not running" : "not mosquitto");
		free(comm);
		return 0;
	}
	free(comm);
	if (kill((pid_t)pid, SIGHUP) != 0) {
		log_warn(SERVICE_SUBSYS, "broker_pid_file %s: cannot signal process %ld", file,
			 pid);
		return 0;
	}
	log_info(SERVICE_SUBSYS, "broker (pid %ld) told to reload the CRL (SIGHUP)", pid);
	return pid;
}
