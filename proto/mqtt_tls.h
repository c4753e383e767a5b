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

#endif
