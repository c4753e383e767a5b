/* mqtt_tls.c: the one place Paho's TLS options are set (see mqtt_tls.h). */
#include <openssl/crypto.h>

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
