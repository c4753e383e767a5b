/* config.c: service.json (broker, certificate lifetime, nonce ttl, the broker's pid file, the
 * store) and paths in the directory. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "service.h"

struct broker_section {
	char *host;
	int port;
	char *ca_file;
};

static const struct conf_key broker_keys[] = {
	{ .name = "host",
	  .kind = CONF_STRING,
	  .required = true,
	  .offset = offsetof(struct broker_section, host),
	  .expect = "the broker's host name" },
	CONF_INT_KEY("port", struct broker_section, port, 1, 65535, false, "a TCP port"),
	{ .name = "ca_file",
	  .kind = CONF_STRING,
	  .required = true,
	  .offset = offsetof(struct broker_section, ca_file),
	  .expect = "the CA file of the broker's server certificate" },
	{ .name = NULL },
};

/* The store's backends, in enum store_backend's order. */
static const char *const store_backends[] = { "files", "sqlite", "postgresql", NULL };

/* SQLite's synchronous levels, in enum store_sqlite_synchronous's order. */
static const char *const store_synchronous[] = { "full", "normal", NULL };

struct store_section {
	int backend;
	char *path;
	char *conninfo;
	int synchronous; /* -1: not given */
};

static const struct conf_key store_keys[] = {
	{ .name = "backend",
	  .kind = CONF_ENUM,
	  .required = true,
	  .offset = offsetof(struct store_section, backend),
	  .choices = store_backends,
	  .expect = "store backend" },
	{ .name = "path",
	  .kind = CONF_STRING,
	  .offset = offsetof(struct store_section, path),
	  .expect = "the SQLite database file (default service.db in the service directory)" },
	{ .name = "conninfo",
	  .kind = CONF_STRING,
	  .offset = offsetof(struct store_section, conninfo),
	  .expect = "a PostgreSQL connection string (libpq's keyword=value or URI)" },
	{ .name = "synchronous",
	  .kind = CONF_ENUM,
	  .offset = offsetof(struct store_section, synchronous),
	  .choices = store_synchronous,
	  .expect = "SQLite synchronous level" },
	{ .name = NULL },
};

static const struct conf_key top_keys[] = {
	{ .name = "broker", .kind = CONF_OBJECT, .required = true },
	{ .name = "store", .kind = CONF_OBJECT },
	CONF_INT_KEY("lifetime_s", struct service_config, lifetime_s, 5, 366LL * 86400, false,
		     "seconds of operational certificate lifetime"),
	CONF_INT_KEY("nonce_ttl_s", struct service_config, nonce_ttl_s, 1, 3600, false, "seconds"),
	{ .name = "broker_pid_file",
	  .kind = CONF_STRING,
	  .offset = offsetof(struct service_config, broker_pid_file),
	  .expect = "the pid file of a broker on this host, told to reload the CRL" },
	{ .name = NULL },
};

bool service_path(char *buf, size_t cap, const char *dir, const char *name)
{
	int n = snprintf(buf, cap, "%s/%s", dir, name);

	return n >= 0 && (size_t)n < cap;
}

void service_config_release(struct service_config *cfg)
{
	if (cfg == NULL)
		return;
	free(cfg->broker_host);
	free(cfg->broker_ca_file);
	free(cfg->broker_pid_file);
	free(cfg->store.path);
	free(cfg->store.conninfo);
	cfg->broker_host = NULL;
	cfg->broker_ca_file = NULL;
	cfg->broker_pid_file = NULL;
	cfg->store.path = NULL;
	cfg->store.conninfo = NULL;
}

/* A relative *path made relative to 'dir' (the old string freed). 0 or GD_ENOMEM. */
static int resolve(const char *dir, char **path)
{
	char *joined;

	if ((*path)[0] == '/')
		return 0;
	if (asprintf(&joined, "%s/%s", dir, *path) < 0)
		return GD_ENOMEM;
	free(*path);
	*path = joined;
	return 0;
}

/*
 * The "store" object 'obj' (NULL: none, the files store) into cfg->store; the SQLite file
 * resolved against 'dir' (service.db by default). The number of errors added to 'c'.
 */
static int store_load(const char *dir, const void *obj, struct store_config *out, struct conf *c)
{
	struct store_section st = { .backend = STORE_FILES, .synchronous = -1 };
	int errors = 0;

	*out = (struct store_config){ .backend = STORE_FILES };
	if (obj == NULL)
		return 0;
	errors = conf_read_object(c, obj, "store", store_keys, &st);
	if (errors != 0)
		goto out;
	if (st.backend == STORE_POSTGRES && st.conninfo == NULL) {
		conf_error(c, "store.conninfo",
			   "required with backend \"postgresql\" (libpq's keyword=value or URI, "
			   "e.g. \"host=/run/postgresql dbname=guardian\")");
		errors++;
	}
	if (st.backend != STORE_POSTGRES && st.conninfo != NULL) {
		conf_error(c, "store.conninfo", "only for backend \"postgresql\", not \"%s\"",
			   store_backends[st.backend]);
		errors++;
	}
	if (st.backend != STORE_SQLITE && st.path != NULL) {
		conf_error(c, "store.path", "only for backend \"sqlite\", not \"%s\"",
			   store_backends[st.backend]);
		errors++;
	}
	if (st.backend != STORE_SQLITE && st.synchronous >= 0) {
		conf_error(c, "store.synchronous", "only for backend \"sqlite\", not \"%s\"",
			   store_backends[st.backend]);
		errors++;
	}
	if (errors != 0)
		goto out;
	if (st.backend == STORE_SQLITE) {
		char cwd[4096];

		if (st.path == NULL)
			st.path = strdup("service.db");
		if (st.path == NULL || resolve(dir, &st.path) != 0) {
			conf_error(c, "store.path", "out of memory");
			errors++;
			goto out;
		}
		/* Absolute: the same file whoever takes it relative to what (a relative DIR). */
		if (st.path[0] != '/' && getcwd(cwd, sizeof(cwd)) != NULL &&
		    resolve(cwd, &st.path) != 0) {
			conf_error(c, "store.path", "out of memory");
			errors++;
			goto out;
		}
	}
	out->backend = (enum store_backend)st.backend;
	out->path = st.path;
	out->conninfo = st.conninfo;
	out->sqlite_synchronous = st.synchronous == STORE_SYNCHRONOUS_NORMAL
					  ? STORE_SYNCHRONOUS_NORMAL
					  : STORE_SYNCHRONOUS_FULL;
	st.path = NULL;
	st.conninfo = NULL;
out:
	free(st.path);
	free(st.conninfo);
	return errors;
}

int service_config_load(const char *dir, struct service_config *cfg, struct conf *c)
{
	struct broker_section broker = { .port = 8884 };
	char path[4096];
	char *text = NULL;
	cJSON *root = NULL;
	int rc = GD_ECONFIG;

	*cfg = (struct service_config){ .broker_port = 8884,
					.lifetime_s = 86400,
					.nonce_ttl_s = 30 };
	if (!service_path(path, sizeof(path), dir, SERVICE_CONFIG_FILE)) {
		conf_error(c, NULL, "path too long");
		goto out;
	}
	text = gd_read_file(path);
	if (text == NULL) {
		conf_error(c, NULL, "cannot read: %s (run guardian-service init first)",
			   strerror(errno));
		goto out;
	}
	root = cJSON_Parse(text);
	if (root == NULL) {
		conf_error(c, NULL, "invalid JSON (expected a JSON object)");
		goto out;
	}
	if (conf_read_object(c, root, "", top_keys, cfg) != 0)
		goto out;
	if (conf_read_object(c, cJSON_GetObjectItemCaseSensitive(root, "broker"), "broker",
			     broker_keys, &broker) != 0)
		goto out;
	cfg->broker_host = broker.host;
	cfg->broker_port = broker.port;
	broker.host = NULL;
	if (resolve(dir, &broker.ca_file) != 0) {
		conf_error(c, "broker.ca_file", "out of memory");
		goto out;
	}
	cfg->broker_ca_file = broker.ca_file;
	broker.ca_file = NULL;
	if (cfg->broker_pid_file != NULL && resolve(dir, &cfg->broker_pid_file) != 0) {
		conf_error(c, "broker_pid_file", "out of memory");
		goto out;
	}
	if (store_load(dir, cJSON_GetObjectItemCaseSensitive(root, "store"), &cfg->store, c) != 0)
		goto out;
	rc = 0;
out:
	free(broker.host);
	free(broker.ca_file);
	cJSON_Delete(root);
	free(text);
	if (rc != 0)
		service_config_release(cfg);
	return rc;
}

int service_config_write(const char *dir, const struct service_config *cfg)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *broker = cJSON_AddObjectToObject(root, "broker");
	char path[4096];
	char *text = NULL;
	int rc = GD_ENOMEM;

	if (broker == NULL || cJSON_AddStringToObject(broker, "host", cfg->broker_host) == NULL ||
	    cJSON_AddNumberToObject(broker, "port", cfg->broker_port) == NULL ||
	    cJSON_AddStringToObject(broker, "ca_file", cfg->broker_ca_file) == NULL ||
	    cJSON_AddNumberToObject(root, "lifetime_s", (double)cfg->lifetime_s) == NULL ||
	    cJSON_AddNumberToObject(root, "nonce_ttl_s", cfg->nonce_ttl_s) == NULL ||
	    (cfg->broker_pid_file != NULL &&
	     cJSON_AddStringToObject(root, "broker_pid_file", cfg->broker_pid_file) == NULL))
		goto out;
	/* The files store is what a missing "store" means: written only for the others. */
	if (cfg->store.backend != STORE_FILES) {
		cJSON *store = cJSON_AddObjectToObject(root, "store");

		if (store == NULL ||
		    cJSON_AddStringToObject(store, "backend",
					    store_backend_name(cfg->store.backend)) == NULL ||
		    (cfg->store.path != NULL &&
		     cJSON_AddStringToObject(store, "path", cfg->store.path) == NULL) ||
		    (cfg->store.conninfo != NULL &&
		     cJSON_AddStringToObject(store, "conninfo", cfg->store.conninfo) == NULL) ||
		    (cfg->store.backend == STORE_SQLITE &&
		     cJSON_AddStringToObject(store, "synchronous",
					     store_synchronous[cfg->store.sqlite_synchronous]) ==
			     NULL))
			goto out;
	}
	text = cJSON_Print(root);
	if (text == NULL)
		goto out;
	rc = GD_EIO;
	if (!service_path(path, sizeof(path), dir, SERVICE_CONFIG_FILE))
		goto out;
	{
		size_t n = strlen(text);

		text[n] = '\n'; /* replaces the NUL; written with its length */
		rc = gd_write_file_atomic(path, text, n + 1, 0644);
		text[n] = '\0';
	}
out:
	free(text);
	cJSON_Delete(root);
	return rc;
}
