/* config.c: loads the site config (JSON), validates all of it, and builds adapters, point table and
 * policy. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <libgen.h>
#include <mbedtls/sha256.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tpm/tpm.h"
#include "console.h"
#include "core.h"
#include "measure.h"
#include "update.h"

static const char *const log_level_names[] = { "error", "warn", "info", "debug", NULL };

static const struct conf_key top_keys[] = {
	{ .name = "device_id",
	  .kind = CONF_STRING,
	  .required = true,
	  .offset = offsetof(struct gd_config, device_id),
	  .expect = "the device's name" },
	{ .name = "state_dir",
	  .kind = CONF_STRING,
	  .offset = offsetof(struct gd_config, state_dir),
	  .expect = "a directory" },
	{ .name = "policy",
	  .kind = CONF_STRING,
	  .required = true,
	  .offset = offsetof(struct gd_config, policy_file),
	  .expect = "the policy file" },
	{ .name = "log_level",
	  .kind = CONF_ENUM,
	  .offset = offsetof(struct gd_config, log_level),
	  .choices = log_level_names,
	  .expect = "log level" },
	{ .name = "uplink", .kind = CONF_OBJECT, .required = true },
	{ .name = "console", .kind = CONF_OBJECT },
	{ .name = "attestation", .kind = CONF_OBJECT },
	{ .name = "update", .kind = CONF_OBJECT },
	{ .name = "sandbox", .kind = CONF_OBJECT },
	{ .name = "adapters",
	  .kind = CONF_ARRAY,
	  .required = true,
	  .expect = "an array of adapters" },
	{ .name = NULL },
};

static const struct conf_key console_keys[] = {
	SERIAL_CONF_KEYS(struct gd_console, port, false),
	{ .name = "pin_hash",
	  .kind = CONF_STRING,
	  .offset = offsetof(struct gd_console, pin_hash),
	  .expect = "the output of guardian console hash-pin" },
	CONF_INT_KEY("idle_timeout_s", struct gd_console, idle_timeout_s, 5, 86400, false,
		     "seconds"),
	CONF_INT_KEY("lockout_after", struct gd_console, lockout_after, 1, 100, false,
		     "a number of wrong PINs"),
	CONF_INT_KEY("lockout_base_s", struct gd_console, lockout_base_s, 1, 3600, false,
		     "seconds"),
	{ .name = NULL },
};

/* The console section: all optional; a PIN hash is checked here, not at the first login. */
static void read_console(struct gd_config *cfg, struct conf *c, const cJSON *obj)
{
	const char *why;

	cfg->console = (struct gd_console){ .port = SERIAL_DEFAULTS,
					    .idle_timeout_s = 300,
					    .lockout_after = 5,
					    .lockout_base_s = 30 };
	if (obj == NULL)
		return;
	if (conf_read_object(c, obj, "console", console_keys, &cfg->console) != 0)
		return;
	if (cfg->console.pin_hash != NULL &&
	    (why = console_pin_hash_check(cfg->console.pin_hash)) != NULL)
		conf_error(c, "console.pin_hash", "%s (make one with: guardian console hash-pin)",
			   why);
}

static const struct conf_key sandbox_keys[] = {
	{ .name = "enabled",
	  .kind = CONF_BOOL,
	  .offset = offsetof(struct gd_sandbox_config, enabled),
	  .expect = "true or false" },
	{ .name = "user",
	  .kind = CONF_STRING,
	  .offset = offsetof(struct gd_sandbox_config, user),
	  .expect = "the user to run as once started" },
	{ .name = "compartments",
	  .kind = CONF_BOOL,
	  .offset = offsetof(struct gd_sandbox_config, compartments),
	  .expect = "true or false" },
	{ .name = "adapter_user",
	  .kind = CONF_STRING,
	  .offset = offsetof(struct gd_sandbox_config, adapter_user),
	  .expect = "the user the adapters' children run as" },
	{ .name = "uplink_user",
	  .kind = CONF_STRING,
	  .offset = offsetof(struct gd_sandbox_config, uplink_user),
	  .expect = "the user the uplink's child runs as" },
	{ .name = NULL },
};

/* Looks up sandbox.<key>'s user 'name' into *uid, *gid; false with an error naming the key. */
static bool child_user(struct conf *c, const char *key, const char *name, uid_t *uid, gid_t *gid)
{
	struct passwd pw, *found = NULL;
	char buf[16384], path[64];
	int err;

	snprintf(path, sizeof(path), "sandbox.%s", key);
	if (name[0] == '\0') {
		conf_error(c, path,
			   "an empty user name (leave the key out to run that child as "
			   "guardian's user)");
		return false;
	}
	err = getpwnam_r(name, &pw, buf, sizeof(buf), &found);
	if (err != 0 || found == NULL) {
		conf_error(c, path, "no user \"%s\" on this system%s%s", name, err ? ": " : "",
			   err ? strerror(err) : "");
		return false;
	}
	*uid = pw.pw_uid;
	*gid = pw.pw_gid;
	return true;
}

/*
 * sandbox.adapter_user and sandbox.uplink_user: users of their own (the point is separate uids:
 * a child cannot signal, trace or read the files of guardian or of the other children), so
 * neither guardian's (sandbox.user, else the user loading the config) nor each other's; only
 * with compartments, which start those children.
 */
static void read_child_users(struct gd_config *cfg, struct conf *c)
{
	struct gd_sandbox_config *sb = &cfg->sandbox;
	const char *keys[2] = { "adapter_user", "uplink_user" };
	const char *names[2] = { sb->adapter_user, sb->uplink_user };
	uid_t *uids[2] = { &sb->adapter_uid, &sb->uplink_uid };
	gid_t *gids[2] = { &sb->adapter_gid, &sb->uplink_gid };
	bool found[2] = { false, false };
	uid_t own = geteuid();
	gid_t own_gid;

	if (names[0] == NULL && names[1] == NULL)
		return;
	if (sb->user != NULL && !child_user(c, "user", sb->user, &own, &own_gid))
		return; /* guardian's own user is unknown: run refuses anyway, said once */
	for (int i = 0; i < 2; i++) {
		if (names[i] == NULL)
			continue;
		if (!sb->enabled || !sb->compartments) {
			conf_error(c, i == 0 ? "sandbox.adapter_user" : "sandbox.uplink_user",
				   "only with compartments, which start that child (remove the "
				   "key, or "
				   "turn the sandbox and its compartments on)");
			continue;
		}
		found[i] = child_user(c, keys[i], names[i], uids[i], gids[i]);
		if (found[i] && *uids[i] == own)
			conf_error(
				c, i == 0 ? "sandbox.adapter_user" : "sandbox.uplink_user",
				"\"%s\" (uid %u) is guardian's own user: the point is a uid of the "
				"child's own, that cannot signal, trace or read guardian (name "
				"another user, or leave the key out)",
				names[i], (unsigned)own);
	}
	if (found[0] && found[1] && sb->adapter_uid == sb->uplink_uid)
		conf_error(
			c, "sandbox.uplink_user",
			"\"%s\" (uid %u) is also sandbox.adapter_user: the point is separate uids, "
			"so that a compromised adapter child cannot signal or read the uplink's "
			"(name two users)",
			names[1], (unsigned)sb->uplink_uid);
}

/* The sandbox section (base/sandbox.h): on unless "enabled": false, and with it compartments
 * unless "compartments": false; the user is looked up when guardian run enters it. */
static void read_sandbox(struct gd_config *cfg, struct conf *c, const cJSON *obj, bool child)
{
	cfg->sandbox = (struct gd_sandbox_config){ .enabled = true, .compartments = true };
	if (obj == NULL || conf_read_object(c, obj, "sandbox", sandbox_keys, &cfg->sandbox) != 0)
		return;
	if (cfg->sandbox.user != NULL && cfg->sandbox.user[0] == '\0') {
		conf_error(c, "sandbox.user",
			   "an empty user name (leave the key out to stay the user guardian starts "
			   "as)");
		return;
	}
	/* A child runs as its user already, and has nothing to do with the others. */
	if (!child)
		read_child_users(cfg, c);
}

static void resolve_file_keys(cJSON *obj, const char *dir, const char *const *keys);

/* Whether the config names a sandbox.uplink_user (read and checked with the section). */
static bool has_uplink_user(const cJSON *root)
{
	const cJSON *sb = cJSON_GetObjectItemCaseSensitive(root, "sandbox");

	return cJSON_IsString(cJSON_GetObjectItemCaseSensitive(sb, "uplink_user"));
}

static const struct conf_key attest_keys[] = {
	{ .name = "host",
	  .kind = CONF_STRING,
	  .required = true,
	  .offset = offsetof(struct gd_attestation, host),
	  .expect = "the host of the broker's attestation listener" },
	CONF_INT_KEY("port", struct gd_attestation, port, 1, 65535, true, "a TCP port"),
	{ .name = "ca_file",
	  .kind = CONF_STRING,
	  .required = true,
	  .offset = offsetof(struct gd_attestation, ca_file),
	  .expect = "the PEM file of the CA that signed the broker" },
	{ .name = "cert_file",
	  .kind = CONF_STRING,
	  .offset = offsetof(struct gd_attestation, cert_file),
	  .expect = "the identity certificate (default state_dir/identity.crt)" },
	CONF_INT_KEY("timeout_ms", struct gd_attestation, timeout_ms, 100, 600000, false,
		     "a timeout in ms"),
	CONF_INT_KEY("retry_min_ms", struct gd_attestation, retry_min_ms, 100, 3600000, false,
		     "a delay in ms"),
	CONF_INT_KEY("retry_max_ms", struct gd_attestation, retry_max_ms, 100, 86400000, false,
		     "a delay in ms"),
	{ .name = "tpm", .kind = CONF_OBJECT },
	{ .name = NULL },
};

static const struct conf_key tpm_keys[] = {
	{ .name = "tcti",
	  .kind = CONF_STRING,
	  .required = true,
	  .offset = offsetof(struct gd_attestation, tpm_tcti),
	  .expect = "a TCTI string such as device:/dev/tpmrm0" },
	CONF_INT_KEY("pcr", struct gd_attestation, tpm_pcr, 16, 23, false,
		     "PCR 23 (application) or 16 (debug)"),
	{ .name = NULL },
};

/* attestation.tpm: which TPM and PCR; only the resettable PCRs, since each launch resets it. */
static void read_tpm(struct gd_config *cfg, struct conf *c, const cJSON *obj)
{
	const cJSON *tpm = cJSON_GetObjectItemCaseSensitive(obj, "tpm");

	if (tpm == NULL)
		return;
	cfg->attest.tpm_pcr = GD_TPM_PCR_DEFAULT;
	if (conf_read_object(c, tpm, "attestation.tpm", tpm_keys, &cfg->attest) != 0)
		return;
	if (cfg->attest.tpm_pcr != 16 && cfg->attest.tpm_pcr != 23) {
		conf_error(c, "attestation.tpm.pcr",
			   "%d is not resettable at locality 0; use 23 (application) or 16 (debug)",
			   cfg->attest.tpm_pcr);
		return;
	}
	cfg->attest.tpm = true;
}

/*
 * The attestation section. With it, the uplink's certificate and key are the
 * operational ones attestation writes into the state directory, so the config
 * must not name its own.
 */
static void read_attestation(struct gd_config *cfg, struct conf *c, cJSON *root)
{
	static const char *const files[] = { "ca_file", "cert_file", NULL };
	cJSON *obj = cJSON_GetObjectItemCaseSensitive(root, "attestation");
	cJSON *up = cJSON_GetObjectItemCaseSensitive(root, "uplink");
	char *crt = NULL, *key = NULL;

	cfg->attest = (struct gd_attestation){ .timeout_ms = 10000,
					       .retry_min_ms = 5000,
					       .retry_max_ms = 600000 };
	if (!cJSON_IsObject(obj))
		return;
	resolve_file_keys(obj, cfg->dir, files);
	if (conf_read_object(c, obj, "attestation", attest_keys, &cfg->attest) != 0)
		return;
	cfg->attest.enabled = true;
	read_tpm(cfg, c, obj);
	if (cfg->attest.cert_file == NULL &&
	    asprintf(&cfg->attest.cert_file, "%s/identity.crt", cfg->state_dir) < 0)
		cfg->attest.cert_file = NULL;
	if (!cJSON_IsObject(up))
		return;
	for (size_t i = 0; i < 2; i++) {
		const char *k = i == 0 ? "cert_file" : "key_file";

		if (cJSON_GetObjectItemCaseSensitive(up, k) != NULL)
			conf_error(c, i == 0 ? "uplink.cert_file" : "uplink.key_file",
				   "not with attestation: the operational certificate and key "
				   "are made at run time in state_dir (remove this key)");
	}
	if (asprintf(&crt, "%s/op.crt", cfg->state_dir) < 0 ||
	    asprintf(&key, "%s/op.key", cfg->state_dir) < 0) {
		free(crt);
		return;
	}
	cJSON_AddStringToObject(up, "cert_file", crt);
	cJSON_AddStringToObject(up, "key_file", key);
	cfg->uplink.attested = true;
	free(crt);
	free(key);
}

struct adapter_head {
	char *name;
	char *type;
};

/* Rewrites the file keys of 'obj' to be relative to the config's directory. */
static void resolve_file_keys(cJSON *obj, const char *dir, const char *const *keys)
{
	for (size_t i = 0; keys[i] != NULL; i++) {
		cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, keys[i]);
		char *resolved;

		if (!cJSON_IsString(item))
			continue;
		resolved = gd_path_resolve(dir, item->valuestring);
		if (resolved == NULL)
			continue;
		cJSON_SetValuestring(item, resolved);
		free(resolved);
	}
}

/* Reports where cJSON stopped, as line and column. */
static void json_error(struct conf *c, const char *text, const char *err_at)
{
	size_t line = 1, col = 1;

	for (const char *q = text; err_at != NULL && q < err_at && *q; q++) {
		if (*q == '\n') {
			line++;
			col = 1;
		} else {
			col++;
		}
	}
	conf_error(c, NULL, "line %zu, column %zu: invalid JSON (expected a JSON object)", line,
		   col);
}

static int read_adapters(struct gd_config *cfg, struct conf *c, const cJSON *arr)
{
	const cJSON *item;
	char path[64], sub[96], types[256];
	size_t i = 0, n = (size_t)cJSON_GetArraySize(arr);
	int errors = 0;

	if (n == 0) {
		conf_error(c, "adapters", "empty (expected at least one adapter)");
		return 1;
	}
	cfg->adapters = calloc(n, sizeof(*cfg->adapters));
	if (cfg->adapters == NULL) {
		conf_error(c, "adapters", "out of memory");
		return 1;
	}
	cJSON_ArrayForEach (item, arr) {
		const cJSON *name, *type;
		const struct adapter_ops *ops;
		struct adapter *a;

		conf_path_index(path, sizeof(path), "adapters", i++);
		if (!cJSON_IsObject(item)) {
			conf_error(c, path, "expected an adapter object");
			errors++;
			continue;
		}
		name = cJSON_GetObjectItemCaseSensitive(item, "name");
		type = cJSON_GetObjectItemCaseSensitive(item, "type");
		if (!cJSON_IsString(name) || !conf_valid_name(name->valuestring)) {
			conf_error(c, conf_path_key(sub, sizeof(sub), path, "name"),
				   "%s (expected 1 to 63 of A-Z a-z 0-9 _ . -)",
				   name == NULL ? "missing" : "invalid adapter name");
			errors++;
			continue;
		}
		for (size_t j = 0; j < cfg->nadapters; j++) {
			if (strcmp(cfg->adapters[j]->name, name->valuestring) == 0) {
				conf_error(c, conf_path_key(sub, sizeof(sub), path, "name"),
					   "adapter \"%s\" is defined twice (also adapters[%zu])",
					   name->valuestring, j);
				errors++;
			}
		}
		if (!cJSON_IsString(type)) {
			conf_error(c, conf_path_key(sub, sizeof(sub), path, "type"),
				   "%s (expected one of %s)",
				   type == NULL ? "missing" : "not a string",
				   adapter_types_text(types, sizeof(types)));
			errors++;
			continue;
		}
		ops = adapter_ops_find(type->valuestring);
		if (ops == NULL) {
			conf_error(c, conf_path_key(sub, sizeof(sub), path, "type"),
				   "unknown adapter type \"%s\" (expected one of %s)",
				   type->valuestring, adapter_types_text(types, sizeof(types)));
			errors++;
			continue;
		}
		a = adapter_new(name->valuestring, ops);
		if (a == NULL) {
			conf_error(c, path, "out of memory");
			return errors + 1;
		}
		cfg->adapters[cfg->nadapters++] = a;
		errors += ops->configure(a, c, item, path);
	}
	return errors;
}

static int build_point_table(struct gd_config *cfg, struct conf *c)
{
	size_t n = 0, k = 0;

	for (size_t i = 0; i < cfg->nadapters; i++)
		n += cfg->adapters[i]->npoints;
	cfg->points = calloc(n ? n : 1, sizeof(*cfg->points));
	if (cfg->points == NULL) {
		conf_error(c, "adapters", "out of memory");
		return 1;
	}
	for (size_t i = 0; i < cfg->nadapters; i++) {
		struct adapter *a = cfg->adapters[i];

		for (size_t j = 0; j < a->npoints; j++) {
			a->points[j].id = (uint32_t)k;
			cfg->points[k++] = &a->points[j];
		}
	}
	cfg->npoints = n;
	return 0;
}

struct policy *gd_policy_load(const struct gd_config *cfg, struct conf *c,
			      struct gd_measured *measured)
{
	const char **names = calloc(cfg->nadapters ? cfg->nadapters : 1, sizeof(*names));
	char endpoint[300];
	struct policy *p = NULL;
	struct conf pc;
	char *text;

	if (names == NULL) {
		conf_error(c, "policy", "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < cfg->nadapters; i++)
		names[i] = cfg->adapters[i]->name;
	snprintf(endpoint, sizeof(endpoint), "%s:%d", cfg->uplink.host ? cfg->uplink.host : "",
		 cfg->uplink.port);
	/* Policy errors are reported against the policy file. */
	conf_init(&pc, cfg->policy_file);
	text = gd_read_file(cfg->policy_file);
	if (text == NULL) {
		conf_error(&pc, "", "cannot read policy: %s", strerror(errno));
	} else {
		/* The bytes the parser sees (all of a text file) are the bytes measured. */
		measure_take(measured, cfg->policy_file, text, strlen(text));
		p = policy_load(&pc, text, strlen(text), cfg->points, cfg->npoints, names,
				cfg->nadapters, endpoint);
	}
	free(text);
	/* Every function code an adapter's polls send must be allowed. */
	for (size_t i = 0; p != NULL && i < cfg->nadapters; i++) {
		const struct adapter *a = cfg->adapters[i];
		uint8_t used[128] = { 0 };
		char path[96];

		if (a->ops->read_functions == NULL)
			continue;
		a->ops->read_functions(a, used);
		for (unsigned fc = 1; fc < 128; fc++) {
			if (!used[fc] || policy_function_allowed(p, i, fc))
				continue;
			snprintf(path, sizeof(path), "function_codes.%s", a->name);
			conf_error(&pc, path,
				   "the map of %s reads with function code %u, which this list "
				   "does not allow",
				   a->name, fc);
		}
	}
	if (p != NULL && pc.nerrors > 0) {
		policy_free(p);
		p = NULL;
	}
	conf_take(c, &pc);
	free(names);
	return p;
}

int gd_config_load(const char *file, struct conf *c, struct gd_config **out)
{
	return gd_config_load_at(file, NULL, c, out);
}

static int load(const char *file, const char *given, size_t given_len, const char *state_dir,
		struct conf *c, struct gd_config **out);

int gd_config_load_at(const char *file, const char *state_dir, struct conf *c,
		      struct gd_config **out)
{
	return load(file, NULL, 0, state_dir, c, out);
}

int gd_config_load_child(const char *file, const char *text, size_t len, const char *state_dir,
			 struct conf *c, struct gd_config **out)
{
	*out = NULL;
	if (text == NULL || memchr(text, '\0', len) != NULL) {
		conf_error(c, "", "the config handed over holds a NUL byte");
		return GD_ECONFIG;
	}
	return load(file, text, len, state_dir, c, out);
}

/* 'given' (not NULL): a child's load, of those bytes (gd_config_load_child). */
static int load(const char *file, const char *given, size_t given_len, const char *state_dir,
		struct conf *c, struct gd_config **out)
{
	bool child = given != NULL;
	static const char *const uplink_files[] = { "ca_file", "cert_file", "key_file", NULL };
	struct gd_config *cfg = calloc(1, sizeof(*cfg));
	const char *err_at = NULL;
	cJSON *root = NULL;
	cJSON *item;
	char *text = NULL, *copy;
	size_t before = c->nerrors;

	*out = NULL;
	if (cfg == NULL) {
		conf_error(c, "", "out of memory");
		return GD_ENOMEM;
	}
	cfg->log_level = LOG_LEVEL_INFO;
	uplink_config_defaults(&cfg->uplink);
	cfg->file = strdup(file);
	copy = strdup(file);
	cfg->dir = copy ? strdup(dirname(copy)) : NULL;
	free(copy);
	if (cfg->file == NULL || cfg->dir == NULL) {
		conf_error(c, "", "out of memory");
		goto out;
	}
	text = child ? strndup(given, given_len) : gd_read_file(file);
	if (text == NULL) {
		conf_error(c, "", "cannot read: %s", strerror(errno));
		goto out;
	}
	if (child) {
		snprintf(cfg->measured_config.name, sizeof(cfg->measured_config.name), "%s", file);
		mbedtls_sha256_ret((const unsigned char *)text, strlen(text),
				   cfg->measured_config.sha256, 0);
	} else {
		measure_take(&cfg->measured_config, file, text, strlen(text));
	}
	root = cJSON_ParseWithOpts(text, &err_at, 1);
	if (root == NULL || !cJSON_IsObject(root)) {
		json_error(c, text, root == NULL ? err_at : text);
		goto out;
	}
	if (conf_read_object(c, root, "", top_keys, cfg) != 0 && cfg->device_id == NULL)
		goto out;
	if (cfg->device_id != NULL && !conf_valid_name(cfg->device_id))
		conf_error(c, "device_id",
			   "invalid device id \"%s\" (expected 1 to 63 of A-Z a-z 0-9 _ . -; it "
			   "becomes part of MQTT topics)",
			   cfg->device_id);
	if (state_dir != NULL) {
		/* guardian -s DIR: instead of the config's; everything below derives from it. */
		free(cfg->state_dir);
		cfg->state_dir = strdup(state_dir);
	} else if (cfg->state_dir == NULL) {
		cfg->state_dir = strdup("/var/lib/guardian");
	} else {
		char *resolved = gd_path_resolve(cfg->dir, cfg->state_dir);

		free(cfg->state_dir);
		cfg->state_dir = resolved;
	}
	read_attestation(cfg, c, root);
	item = cJSON_GetObjectItemCaseSensitive(root, "uplink");
	if (cJSON_IsObject(item)) {
		resolve_file_keys(item, cfg->dir, uplink_files);
		/* A child: guardian checked them, loading it first. With an uplink_user of its
		 * own they are its to read, not guardian's: preflight checks them for it. */
		cfg->uplink.files_checked = child || has_uplink_user(root);
		uplink_config_read(&cfg->uplink, c, item, "uplink");
	}
	if (cfg->uplink.spool.dir == NULL) {
		if (cfg->state_dir != NULL &&
		    asprintf(&cfg->uplink.spool.dir, "%s/spool", cfg->state_dir) < 0)
			cfg->uplink.spool.dir = NULL;
	} else {
		char *resolved = gd_path_resolve(cfg->dir, cfg->uplink.spool.dir);

		free(cfg->uplink.spool.dir);
		cfg->uplink.spool.dir = resolved;
	}
	item = cJSON_GetObjectItemCaseSensitive(root, "console");
	read_console(cfg, c, cJSON_IsObject(item) ? item : NULL);
	item = cJSON_GetObjectItemCaseSensitive(root, "sandbox");
	read_sandbox(cfg, c, cJSON_IsObject(item) ? item : NULL, child);
	item = cJSON_GetObjectItemCaseSensitive(root, "update");
	if (cJSON_IsObject(item))
		update_config_read(&cfg->update, c, item, cfg->dir);
	item = cJSON_GetObjectItemCaseSensitive(root, "adapters");
	if (cJSON_IsArray(item))
		read_adapters(cfg, c, item);
	if (c->nerrors != before)
		goto out;
	if (build_point_table(cfg, c) != 0)
		goto out;
	if (cfg->policy_file != NULL) {
		char *resolved = gd_path_resolve(cfg->dir, cfg->policy_file);

		free(cfg->policy_file);
		cfg->policy_file = resolved;
		if (resolved == NULL) {
			conf_error(c, "policy", "out of memory");
			goto out;
		}
		/* A child decides nothing: the parent holds the policy. */
		if (!child)
			cfg->policy = gd_policy_load(cfg, c, &cfg->measured_policy);
	}
	/* The CA files as they are at load; one that cannot be measured fails the evidence. */
	if (cfg->uplink.ca_file != NULL && !child)
		measure_take(&cfg->measured_files[0], cfg->uplink.ca_file, NULL, 0);
	if (cfg->attest.enabled && !child)
		measure_take(&cfg->measured_files[1], cfg->attest.ca_file, NULL, 0);
out:
	cJSON_Delete(root);
	if (c->nerrors != before) {
		free(text);
		gd_config_free(cfg);
		return GD_ECONFIG;
	}
	cfg->text = text; /* what the children are handed */
	*out = cfg;
	return 0;
}

void gd_config_free(struct gd_config *cfg)
{
	if (cfg == NULL)
		return;
	policy_free(cfg->policy);
	for (size_t i = 0; i < cfg->nadapters; i++)
		adapter_free(cfg->adapters[i]);
	free(cfg->adapters);
	free(cfg->points);
	uplink_config_release(&cfg->uplink);
	free(cfg->file);
	free(cfg->dir);
	free(cfg->device_id);
	free(cfg->state_dir);
	free(cfg->policy_file);
	free(cfg->attest.host);
	free(cfg->attest.ca_file);
	free(cfg->attest.cert_file);
	free(cfg->attest.tpm_tcti);
	free(cfg->console.port.device);
	free(cfg->console.pin_hash);
	update_config_release(&cfg->update);
	free(cfg->sandbox.user);
	free(cfg->sandbox.adapter_user);
	free(cfg->sandbox.uplink_user);
	free(cfg->text);
	free(cfg);
}
