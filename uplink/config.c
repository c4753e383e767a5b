/* config.c: the "uplink" object of the site config: defaults, checks, and the files it names. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uplink.h"

const char *const queue_drop_names[] = {
	[QUEUE_DROP_OLDEST] = "oldest",
	[QUEUE_DROP_NEWEST] = "newest",
	NULL,
};

#define KIB 1024LL
#define MIB (1024LL * 1024)
#define GIB (1024LL * 1024 * 1024)

/* One key per entry reads better than one field per line. */
/* clang-format off */
#define FIELD(f) .offset = offsetof(struct uplink_config, f), \
		 .size = sizeof(((struct uplink_config *)0)->f)

static const struct conf_key uplink_keys[] = {
	{ .name = "host", .kind = CONF_STRING, .required = true, FIELD(host),
	  .expect = "the broker's host name" },
	{ .name = "port", .kind = CONF_INT, FIELD(port), .min = 1, .max = 65535,
	  .expect = "a TCP port" },
	{ .name = "ca_file", .kind = CONF_STRING, .required = true, FIELD(ca_file),
	  .expect = "the PEM file of the CA that signed the broker" },
	{ .name = "cert_file", .kind = CONF_STRING, .required = true, FIELD(cert_file),
	  .expect = "the PEM file of the device's client certificate" },
	{ .name = "key_file", .kind = CONF_STRING, .required = true, FIELD(key_file),
	  .expect = "the PEM file of the client certificate's private key" },
	{ .name = "client_id", .kind = CONF_STRING, FIELD(client_id),
	  .expect = "an MQTT client id" },
	{ .name = "keepalive_s", .kind = CONF_INT, FIELD(keepalive_s), .min = 5, .max = 3600,
	  .expect = "seconds" },
	{ .name = "connect_timeout_s", .kind = CONF_INT, FIELD(connect_timeout_s), .min = 1,
	  .max = 300, .expect = "seconds" },
	{ .name = "reconnect_min_ms", .kind = CONF_INT, FIELD(reconnect_min_ms), .min = 100,
	  .max = 600000, .expect = "milliseconds" },
	{ .name = "reconnect_max_ms", .kind = CONF_INT, FIELD(reconnect_max_ms), .min = 100,
	  .max = 3600000, .expect = "milliseconds" },
	{ .name = "max_inflight", .kind = CONF_INT, FIELD(max_inflight), .min = 1, .max = 65535,
	  .expect = "a message count" },
	{ .name = "queue_max_bytes", .kind = CONF_INT, FIELD(queue_max_bytes), .min = 64 * KIB,
	  .max = GIB, .expect = "bytes" },
	{ .name = "queue_drop", .kind = CONF_ENUM, FIELD(queue_drop), .choices = queue_drop_names,
	  .expect = "drop policy" },
	{ .name = "max_message_bytes", .kind = CONF_INT, FIELD(max_message_bytes), .min = KIB,
	  .max = 16 * MIB, .expect = "bytes" },
	{ .name = "health_interval_ms", .kind = CONF_INT, FIELD(health_interval_ms), .min = 1000,
	  .max = 3600000, .expect = "milliseconds" },
	{ .name = "verify_hostname", .kind = CONF_BOOL, FIELD(verify_hostname) },
	{ .name = "spool", .kind = CONF_OBJECT },
	{ .name = NULL },
};

#undef FIELD
#define FIELD(f) .offset = offsetof(struct spool_config, f), \
		 .size = sizeof(((struct spool_config *)0)->f)

static const struct conf_key spool_keys[] = {
	{ .name = "enabled", .kind = CONF_BOOL, FIELD(enabled) },
	{ .name = "dir", .kind = CONF_STRING, FIELD(dir),
	  .expect = "a directory for the spool (default state_dir/spool)" },
	{ .name = "sync", .kind = CONF_ENUM, FIELD(sync), .choices = spool_sync_names,
	  .expect = "sync policy" },
	{ .name = "sync_interval_ms", .kind = CONF_INT, FIELD(sync_interval_ms), .min = 1,
	  .max = 60000, .expect = "milliseconds (the power-loss window under \"batch\")" },
	{ .name = "max_bytes", .kind = CONF_INT, FIELD(max_bytes), .min = MIB,
	  .max = 1024 * GIB, .expect = "bytes of disk" },
	{ .name = "drop", .kind = CONF_ENUM, FIELD(drop), .choices = queue_drop_names,
	  .expect = "drop policy" },
	{ .name = "segment_bytes", .kind = CONF_INT, FIELD(segment_bytes), .min = 64 * KIB,
	  .max = GIB, .expect = "bytes per segment file" },
	{ .name = "compress", .kind = CONF_BOOL, FIELD(compress) },
	{ .name = "compress_level", .kind = CONF_INT, FIELD(compress_level), .min = 1, .max = 19,
	  .expect = "a zstd level" },
	{ .name = NULL },
};
/* clang-format on */

void uplink_config_defaults(struct uplink_config *cfg)
{
	*cfg = (struct uplink_config){
		.port = 8883,
		.keepalive_s = 30,
		.connect_timeout_s = 10,
		/* A broker restart costs one short wait, not a grown backoff (README). */
		.reconnect_min_ms = 250,
		.reconnect_max_ms = 30000,
		.max_inflight = 64,
		.queue_max_bytes = 4 * MIB,
		.queue_drop = QUEUE_DROP_OLDEST,
		.max_message_bytes = 128 * KIB,
		.health_interval_ms = 10000,
		.verify_hostname = true,
		.spool = {
			.enabled = true,
			.sync = SPOOL_SYNC_BATCH,
			.sync_interval_ms = 100,
			.max_bytes = 256 * MIB,
			.drop = QUEUE_DROP_OLDEST,
			.segment_bytes = 4 * MIB,
			.compress = true,
			.compress_level = 3,
		},
	};
}

/* Reports at 'path.key' unless 'file' is a readable regular file. */
static int check_file(struct conf *c, const char *path, const char *key, const char *file)
{
	char where[256];
	struct stat st;
	int fd, err = 0;

	if (file == NULL)
		return 0; /* reported as missing already */
	conf_path_key(where, sizeof(where), path, key);
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		conf_error(c, where, "cannot read \"%s\": %s", file, strerror(errno));
		return 1;
	}
	if (fstat(fd, &st) != 0) {
		conf_error(c, where, "cannot read \"%s\": %s", file, strerror(errno));
		err = 1;
	} else if (!S_ISREG(st.st_mode)) {
		conf_error(c, where, "cannot read \"%s\": not a regular file", file);
		err = 1;
	}
	close(fd);
	return err;
}

int uplink_config_read(struct uplink_config *cfg, struct conf *c, const void *json_obj,
		       const char *path)
{
	const cJSON *obj = json_obj;
	size_t before = c->nerrors;
	char where[256];

	conf_read_object(c, obj, path, uplink_keys, cfg);
	if (!cJSON_IsObject(obj))
		goto out; /* reported; nothing more to say */
	if (cfg->host != NULL && cfg->host[0] == '\0')
		conf_error(c, conf_path_key(where, sizeof(where), path, "host"),
			   "empty (expected the broker's host name)");
	if (cfg->client_id != NULL && cfg->client_id[0] == '\0')
		conf_error(c, conf_path_key(where, sizeof(where), path, "client_id"),
			   "empty (expected an MQTT client id, or no key for the device id)");
	if (cfg->reconnect_max_ms < cfg->reconnect_min_ms)
		conf_error(
			c, conf_path_key(where, sizeof(where), path, "reconnect_max_ms"),
			"%d%s is less than reconnect_min_ms %d (expected the longest retry delay, "
			">= the shortest)",
			cfg->reconnect_max_ms,
			cJSON_GetObjectItemCaseSensitive(obj, "reconnect_max_ms")
				? ""
				: " (the default)",
			cfg->reconnect_min_ms);
	if (cfg->max_message_bytes > cfg->queue_max_bytes)
		conf_error(c, conf_path_key(where, sizeof(where), path, "max_message_bytes"),
			   "%lld%s is more than queue_max_bytes %lld (expected a message to fit in "
			   "the queue)",
			   cfg->max_message_bytes,
			   cJSON_GetObjectItemCaseSensitive(obj, "max_message_bytes")
				   ? ""
				   : " (the default)",
			   cfg->queue_max_bytes);
	{
		const cJSON *sp = cJSON_GetObjectItemCaseSensitive(obj, "spool");

		if (sp != NULL) {
			conf_read_object(c, sp, conf_path_key(where, sizeof(where), path, "spool"),
					 spool_keys, &cfg->spool);
			if (cfg->spool.dir != NULL && cfg->spool.dir[0] == '\0')
				conf_error(c, where,
					   "\"dir\" is empty (expected a directory, or no "
					   "key for state_dir/spool)");
		}
	}
	if (cfg->files_checked)
		goto out;
	check_file(c, path, "ca_file", cfg->ca_file);
	if (!cfg->attested) {
		check_file(c, path, "cert_file", cfg->cert_file);
		check_file(c, path, "key_file", cfg->key_file);
	}
out:
	return (int)(c->nerrors - before);
}

void uplink_config_release(struct uplink_config *cfg)
{
	if (cfg == NULL)
		return;
	free(cfg->host);
	free(cfg->ca_file);
	free(cfg->cert_file);
	free(cfg->key_file);
	free(cfg->client_id);
	free(cfg->spool.dir);
	cfg->host = cfg->ca_file = cfg->cert_file = cfg->key_file = cfg->client_id = NULL;
	cfg->spool.dir = NULL;
}
