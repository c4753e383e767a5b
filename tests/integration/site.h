/* site.h: what the integration suites share: a site config around an adapter list, and checks
 * on the telemetry a subscriber received. */
#ifndef SITE_H
#define SITE_H

#include <stddef.h>

#include "../harness/harness.h"

/*
 * What every suite's .init and .fini do: the PKI of 'device' made (tools/pki.sh); every child
 * stopped, a sanitizer report in one of them failing the test.
 */
void it_pki(const char *device);
void it_teardown(void);

/* A policy that lets every point out. */
extern const char *it_allow_all;

/*
 * Writes site.json and policy.json in the work directory for device 'device'
 * with the uplink on 127.0.0.1:broker_port (the policy's "connections" is
 * added); 'adapters' is the JSON array text; 'cert_prefix' picks the device
 * certificate ("" or "rogue-"). Returns the config's path (a rotating buffer).
 */
const char *it_write_site(const char *device, int broker_port, const char *adapters,
			  const char *policy, const char *cert_prefix);
/* Waits until 'n' telemetry messages arrived in 'file'; fails the test if not. */
void it_wait_messages(const char *file, size_t n, int timeout_ms);
/* The last value of 'name' is good and equals 'want' (to 1e-9 relative). */
void it_expect_num(const struct h_telemetry *t, const char *name, double want);
/* The last value of 'name' is the text 'want'. */
void it_expect_text(const struct h_telemetry *t, const char *name, const char *want);

/*
 * The adapter object named 'adapter' in the last health message in 'file'
 * (a subscriber's output), or NULL. *root receives the parsed document, for
 * cJSON_Delete, even when the adapter is not found.
 */
struct cJSON;
const struct cJSON *it_health_adapter(const char *file, const char *adapter, struct cJSON **root);
/* A number at a dotted path ("errors.checksum") of a JSON object; -1 if absent. */
double it_json_num(const struct cJSON *obj, const char *path);
/* A string member of a JSON object, "" if absent. */
const char *it_json_str(const struct cJSON *obj, const char *key);

/*
 * The steps of an attested bed (h_attest_*), each failing the test with the log that says why:
 * the broker, PKI and service directory up; the device enrolled; guardian-service serving; a
 * viewer on the telemetry listener subscribed to 'topics' into sub.out ('client_id' may be
 * NULL); guardian started on b->site.
 */
void it_attest_up(struct h_attest *b, int lifetime_s);
void it_attest_enroll(struct h_attest *b);
void it_attest_serve(struct h_attest *b);
void it_attest_viewer(struct h_attest *b, const char *topics, const char *client_id);
void it_attest_guardian(struct h_attest *b);

#endif
