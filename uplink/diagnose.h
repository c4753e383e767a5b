/* diagnose.h: why a connection attempt failed, when Paho only says "TCP/TLS connect failure"
 * (private). */
#ifndef UPLINK_DIAGNOSE_H
#define UPLINK_DIAGNOSE_H

#include <stddef.h>

/*
 * Paho reports a refused host name, or an alert from the broker after the
 * handshake (a client certificate it does not accept), only in its protocol
 * trace. diagnose_begin() raises Paho's trace level for the duration of a
 * connection attempt and starts collecting those facts; diagnose_end() copies
 * what it saw, as one readable line ("" if nothing), into 'out' and lowers the
 * level again. The trace is global to the process: attempts of several
 * uplinks at once share what is collected. Every Paho socket made in between
 * gets TCP_NODELAY (mqtt_trace_nodelay): connect between the two calls.
 */
void diagnose_begin(void);
void diagnose_end(char *out, size_t len);

/*
 * Tries a plain TCP connection to host:port (at most 'timeout_ms' per
 * address). Returns 0 if one succeeded, or -1 with the reason in 'out'
 * ("cannot resolve ...", "Connection refused", ...).
 */
int diagnose_tcp(const char *host, int port, int timeout_ms, char *out, size_t len);

#endif
