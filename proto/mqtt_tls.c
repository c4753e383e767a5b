/* mqtt_tls.c: the one place Paho's TLS options are set (see mqtt_tls.h). */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "mqtt_tls.h"

void mqtt_tls_options(MQTTAsync_SSLOptions *out, const struct mqtt_tls *t)
{
	MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;

	ssl.trustStore = t->ca_file;
	ssl.disableDefaultTrustStore = 1;
	ssl.keyStore = t->cert_file;
	ssl.privateKey = t->key_file;
	ssl.enableServerCertAuth = 1;
	ssl.verify = !t->no_hostname_check;
	/*
	 * With OpenSSL 1.1 and later Paho ignores sslVersion and negotiates the
	 * best version; OpenSSL 3 refuses anything below TLS 1.2 at the security
	 * level Paho sets, so this only documents the intent.
	 */
	ssl.sslVersion = MQTT_SSL_VERSION_TLS_1_2;
	ssl.ssl_error_cb = t->on_error;
	ssl.ssl_error_context = t->error_context;
	*out = ssl;
}

void mqtt_tls_init(void)
{
	OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
}

bool mqtt_trace_nodelay(const char *message)
{
	static const char key[] = "New socket ";
	const char *p = strstr(message, key);
	char *end;
	long fd;
	int one = 1;

	if (p == NULL)
		return false;
	fd = strtol(p + strlen(key), &end, 10);
	if (end == p + strlen(key) || strncmp(end, " for ", 5) != 0 || fd < 0 || fd > 1 << 20)
		return false;
	/* A Unix socket (none today) refuses it with EOPNOTSUPP: harmless. */
	setsockopt((int)fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return true;
}
