/* mqtt_tls.h: the TLS options every Paho client of guardian and guardian-service uses: the
 * broker's CA pinned (the system's default trust store never consulted), the broker's
 * certificate and host name verified, our own certificate and key. */
#ifndef PROTO_MQTT_TLS_H
#define PROTO_MQTT_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <MQTTAsync.h>

struct mqtt_tls {
	const char *ca_file;   /* the only CA the broker's certificate may chain to */
	const char *cert_file; /* ours; NULL for none */
	const char *key_file;
	/* Check that the broker's certificate names the host we connect to. On by default;
	 * off only for a broker reached by an address its certificate does not list. */
	bool no_hostname_check;
	/* Where OpenSSL's reasons for a failed handshake go (may be NULL). */
	int (*on_error)(const char *str, size_t len, void *context);
	void *error_context;
};

/*
 * Call first thing in main() of every program with a Paho client: OpenSSL (under Paho) must not
 * clean itself up at exit, or a Paho thread still ending then crashes in OpenSSL's thread-exit
 * handler (seen under AddressSanitizer when guardian stopped).
 */
void mqtt_tls_init(void);

/* Fills 'out' (Paho keeps pointers to the strings of 't': they must outlive the connect). */
void mqtt_tls_options(MQTTAsync_SSLOptions *out, const struct mqtt_tls *t);

/*
 * Nagle's algorithm off on Paho's sockets. Paho 1.3 leaves it on and has no option for it, so
 * a small packet written while another is unacknowledged (an answer right after the PUBACK of
 * the question, QoS 1) waits for the peer's delayed ACK: 40 ms on Linux, three times in an
 * attestation round. Paho announces each socket it makes, between socket() and connect(), in
 * its trace at MQTTASYNC_TRACE_MINIMUM: "New socket 7 for localhost, port 8883". Pass every
 * trace line to this function (from MQTTAsync_setTraceCallback's callback, with the trace level
 * at MQTTASYNC_TRACE_MINIMUM while connecting); for that line it sets TCP_NODELAY on the socket
 * and returns true. Any other line: false, nothing done. A Paho that words the line otherwise
 * costs latency only.
 */
bool mqtt_trace_nodelay(const char *message);

#endif
