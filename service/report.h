/* report.h: the failure reports devices send on guardian/<device>/report (guardian/report.h):
 * kept per device in DIR/reports/<device>.json, shown by `guardian-service reports`. */
#ifndef SERVICE_REPORT_H
#define SERVICE_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;

#define SERVICE_REPORTS_DIR	     "reports"
#define SERVICE_REPORT_TOPIC	     "$share/guardian-attest/guardian/+/report"
#define SERVICE_REPORT_BYTES	     16384 /* a larger document is refused */
#define SERVICE_REPORT_KINDS_MAX     64	   /* kinds kept per device; a new one beyond is refused */
#define SERVICE_REPORT_KEYS_PER_KIND 64	   /* keys remembered per kind for counting; oldest go */

/* "guardian/<dev>/report": true with the device in 'dev'. */
bool service_report_topic(const char *topic, char dev[64]);

/*
 * Stores one report 'payload' that device 'dev' sent: the latest of its kind, and the counts.
 * A report sent again (same boot and seq: a redelivery, or a count that grew while it waited on
 * the device) is counted once, its growth added. Several instances may share the store
 * (store_report_update: atomic against every other).
 * 0, or a gd_err with 'why' (logged by the caller).
 */
int service_report_store(struct store *st, const char *dev, const char *payload, size_t len,
			 int64_t now_ms, char *why, size_t cap);

/* `guardian-service reports -d DIR [--device ID] [--json]`: argv[0] is "reports". Exit status. */
int service_reports_main(int argc, char **argv);

#endif
