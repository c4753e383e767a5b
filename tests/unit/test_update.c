/* test_update.c: the device side of updates without a bundle: the "update" config section,
 * update.json, the switch of current, and prestart's counting and rollback. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../../guardian/update.h"

static char dir[64];

static const char *at(const char *name)
{
	static char bufs[4][256];
	static int next;
	char *p = bufs[next++ % 4];

	snprintf(p, 256, "%s/%s", dir, name);
	return p;
}

static void write_file(const char *name, const char *text)
{
	FILE *f = fopen(at(name), "w");

	cr_assert_not_null(f, "cannot write %s", at(name));
	fputs(text, f);
	fclose(f);
}

static char *read_file(const char *name)
{
	return gd_read_file(at(name));
}

static void setup(void)
{
	log_set_level(LOG_LEVEL_ERROR);
	strcpy(dir, "/tmp/gd-update-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(update, .init = setup, .fini = teardown);

/* Two slots, a state, and current -> 'cur'. */
static void slots(const char *state_json, const char *cur)
{
	char why[512];

	cr_assert_eq(mkdir(at("slots"), 0700), 0);
	cr_assert_eq(mkdir(at("slots/a"), 0700), 0);
	cr_assert_eq(mkdir(at("slots/b"), 0700), 0);
	write_file("update.json", state_json);
	cr_assert_eq(update_switch(dir, cur, why, sizeof(why)), 0, "%s", why);
}

Test(update, state_round_trip)
{
	struct update_state st = { .floor = 7,
				   .good = "b",
				   .good_version = 7,
				   .trial = true,
				   .trial_slot = "a",
				   .trial_version = 9,
				   .previous = "b",
				   .attempts = 2,
				   .max_attempts = 3 },
			    back;
	char why[512];

	cr_assert_eq(update_state_write(dir, &st, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(update_state_read(dir, &back, why, sizeof(why)), 0, "%s", why);
	cr_expect_eq(back.floor, 7);
	cr_expect_str_eq(back.good, "b");
	cr_expect_eq(back.good_version, 7);
	cr_expect(back.trial);
	cr_expect_str_eq(back.trial_slot, "a");
	cr_expect_eq(back.trial_version, 9);
	cr_expect_str_eq(back.previous, "b");
	cr_expect_eq(back.attempts, 2);
	cr_expect_eq(back.max_attempts, 3);
	st.trial = false;
	cr_assert_eq(update_state_write(dir, &st, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(update_state_read(dir, &back, why, sizeof(why)), 0, "%s", why);
	cr_expect(!back.trial);
	{
		char *text = read_file("update.json");

		cr_expect(strstr(text, "\"trial\":null") != NULL);
		free(text);
	}
}

Test(update, state_errors_say_where)
{
	struct update_state st;
	char why[512];

	cr_assert_eq(update_state_read(dir, &st, why, sizeof(why)), GD_EIO);
	cr_expect_eq(errno, ENOENT);
	cr_expect(strstr(why, "guardian update init") != NULL, "%s", why);
	write_file("update.json", "{\"floor\":1,\"good\":{\"slot\":\"c\",\"version\":1},"
				  "\"trial\":null}");
	cr_assert_eq(update_state_read(dir, &st, why, sizeof(why)), GD_EPROTO);
	cr_expect(strstr(why, "good.slot: expected \"a\" or \"b\"") != NULL, "%s", why);
	write_file("update.json", "{\"floor\":-1,\"good\":{\"slot\":\"a\",\"version\":1},"
				  "\"trial\":null}");
	cr_assert_eq(update_state_read(dir, &st, why, sizeof(why)), GD_EPROTO);
	cr_expect(strstr(why, "floor:") != NULL, "%s", why);
	write_file("update.json", "{\"floor\":1,\"good\":{\"slot\":\"a\",\"version\":1},"
				  "\"trial\":{\"slot\":\"b\",\"version\":2,\"previous\":\"a\","
				  "\"attempts\":0}}");
	cr_assert_eq(update_state_read(dir, &st, why, sizeof(why)), GD_EPROTO);
	cr_expect(strstr(why, "trial.max_attempts") != NULL, "%s", why);
}

Test(update, switch_is_a_relative_link)
{
	char why[512], slot[2], target[64];
	ssize_t n;

	slots("{}", "a");
	cr_assert_eq(update_current(dir, slot, why, sizeof(why)), 0, "%s", why);
	cr_expect_str_eq(slot, "a");
	cr_assert_eq(update_switch(dir, "b", why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(update_current(dir, slot, why, sizeof(why)), 0, "%s", why);
	cr_expect_str_eq(slot, "b");
	n = readlink(at("current"), target, sizeof(target) - 1);
	cr_assert_gt(n, 0);
	target[n] = '\0';
	cr_expect_str_eq(target, "slots/b");
	cr_expect_neq(access(at(".current.new"), F_OK), 0, "the temporary link stays");
	/* A link somewhere else is named as such. */
	unlink(at("current"));
	cr_assert_eq(symlink("/etc", at("current")), 0);
	cr_expect_eq(update_current(dir, slot, why, sizeof(why)), GD_EPROTO);
	cr_expect(strstr(why, "expected slots/a or slots/b") != NULL, "%s", why);
}

#define TRIAL_B                                                                                    \
	"{\"floor\":1,\"good\":{\"slot\":\"a\",\"version\":1},\"trial\":{\"slot\":\"b\","          \
	"\"version\":2,\"previous\":\"a\",\"attempts\":0,\"max_attempts\":2}}"

Test(update, prestart_counts_then_rolls_back)
{
	struct update_state st;
	char why[512], slot[2], *rb;
	FILE *out = fopen("/dev/null", "w");

	slots(TRIAL_B, "b");
	write_file("last-exit", "{\"status\":1,\"signal\":null}");
	for (int i = 1; i <= 2; i++) {
		cr_assert_eq(update_prestart(dir, out, why, sizeof(why)), 0, "%s", why);
		cr_assert_eq(update_state_read(dir, &st, why, sizeof(why)), 0, "%s", why);
		cr_expect(st.trial);
		cr_expect_eq(st.attempts, i);
		cr_assert_eq(update_current(dir, slot, why, sizeof(why)), 0);
		cr_expect_str_eq(slot, "b", "start %d still tries the new slot", i);
	}
	cr_expect_neq(access(at("rollback.json"), F_OK), 0);
	/* The third start is past max_attempts: back to a. */
	cr_assert_eq(update_prestart(dir, out, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(update_current(dir, slot, why, sizeof(why)), 0);
	cr_expect_str_eq(slot, "a");
	cr_assert_eq(update_state_read(dir, &st, why, sizeof(why)), 0, "%s", why);
	cr_expect(!st.trial);
	cr_expect_eq(st.floor, 1, "a rollback does not move the floor");
	cr_expect_str_eq(st.good, "a");
	rb = read_file("rollback.json");
	cr_assert_not_null(rb);
	cr_expect(strstr(rb, "\"version\":2") != NULL, "%s", rb);
	cr_expect(strstr(rb, "\"rolled_back_to\":\"a\"") != NULL, "%s", rb);
	cr_expect(strstr(rb, "did not pass its health gate in 2 starts") != NULL, "%s", rb);
	cr_expect(strstr(rb, "\"last_exit\":{\"status\":1") != NULL, "%s", rb);
	free(rb);
	/* Nothing on trial: prestart leaves everything. */
	cr_assert_eq(update_prestart(dir, out, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(update_current(dir, slot, why, sizeof(why)), 0);
	cr_expect_str_eq(slot, "a");
	fclose(out);
}

Test(update, prestart_voids_a_trial_never_switched_to)
{
	struct update_state st;
	char why[512], slot[2];
	FILE *out = fopen("/dev/null", "w");

	/* A crash between writing the state and the switch. */
	slots(TRIAL_B, "a");
	cr_assert_eq(update_prestart(dir, out, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(update_state_read(dir, &st, why, sizeof(why)), 0, "%s", why);
	cr_expect(!st.trial);
	cr_expect_str_eq(st.good, "a");
	cr_assert_eq(update_current(dir, slot, why, sizeof(why)), 0);
	cr_expect_str_eq(slot, "a");
	cr_expect_neq(access(at("rollback.json"), F_OK), 0);
	fclose(out);
}

Test(update, prestart_without_state_does_nothing)
{
	char why[512];
	FILE *out = fopen("/dev/null", "w");

	cr_expect_eq(update_prestart(dir, out, why, sizeof(why)), 0);
	fclose(out);
}

/* The "update" section read through update_config_read, with its errors. */
static size_t read_update(const char *json, struct gd_update *u, struct conf *c)
{
	cJSON *obj = cJSON_Parse(json);

	cr_assert_not_null(obj, "bad test JSON %s", json);
	conf_init(c, "site.json");
	update_config_read(u, c, obj, dir);
	cJSON_Delete(obj);
	return c->nerrors;
}

static bool has_error(const struct conf *c, const char *needle)
{
	for (size_t i = 0; i < c->nerrors; i++)
		if (c->errors[i] != NULL && strstr(c->errors[i], needle) != NULL)
			return true;
	return false;
}

static void make_key(const char *name)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd),
		 "openssl ecparam -name prime256v1 -genkey -noout -out %s/%s.key 2>/dev/null && "
		 "openssl ec -in %s/%s.key -pubout -out %s/%s.pub.pem 2>/dev/null",
		 dir, name, dir, name, dir, name);
	cr_assert_eq(system(cmd), 0, "openssl could not make a key");
}

Test(update, config_section)
{
	struct gd_update u;
	struct conf c;

	make_key("k1");
	make_key("k2");
	cr_assert_eq(read_update("{\"keys\":[\"k1.pub.pem\",\"k2.pub.pem\"],\"threshold\":2,"
				 "\"device_class\":\"press-line\",\"trial_attempts\":4,"
				 "\"gate_timeout_s\":60}",
				 &u, &c),
		     0, "%s", c.nerrors ? c.errors[0] : "");
	cr_expect(u.enabled);
	cr_expect_eq(u.nkeys, 2);
	cr_expect(strstr(u.keys[0], dir) == u.keys[0], "resolved against the config's directory");
	cr_expect_eq(u.threshold, 2);
	cr_expect_str_eq(u.device_class, "press-line");
	cr_expect_eq(u.trial_attempts, 4);
	cr_expect_eq(u.gate_timeout_s, 60);
	update_config_release(&u);
	conf_release(&c);
	/* Defaults. */
	cr_assert_eq(read_update("{\"keys\":[\"k1.pub.pem\"],\"device_class\":\"x\"}", &u, &c), 0);
	cr_expect_eq(u.threshold, 1);
	cr_expect_eq(u.trial_attempts, 3);
	cr_expect_eq(u.gate_timeout_s, 300);
	update_config_release(&u);
	conf_release(&c);
}

Test(update, config_errors_name_the_path)
{
	struct gd_update u;
	struct conf c;

	make_key("k1");
	write_file("junk.pem", "not a key\n");
	read_update("{\"keys\":[\"k1.pub.pem\",\"missing.pem\",\"junk.pem\",\"k1.pub.pem\",3],"
		    "\"threshold\":9,\"device_class\":\"press line\",\"gate_timeout_s\":0}",
		    &u, &c);
	cr_expect(!u.enabled);
	cr_expect(has_error(&c, "update.keys[1]: cannot read"), "missing file");
	cr_expect(has_error(&c, "update.keys[2]: ") && has_error(&c, "is not a PEM EC public key"),
		  "junk");
	cr_expect(has_error(&c, "update.keys[3]: the same key as update.keys[0]"), "duplicate");
	cr_expect(has_error(&c, "update.keys[4]: expected the path of a PEM public key file"));
	cr_expect(has_error(&c, "update.threshold"), "9 of 3");
	cr_expect(has_error(&c, "update.device_class"), "space in the class");
	cr_expect(has_error(&c, "update.gate_timeout_s"), "0 s");
	update_config_release(&u);
	conf_release(&c);
	read_update("{\"device_class\":\"x\",\"keys\":[]}", &u, &c);
	cr_expect(has_error(&c, "update.keys: 0 keys"));
	update_config_release(&u);
	conf_release(&c);
	read_update("{\"device_class\":\"x\",\"key\":[]}", &u, &c);
	cr_expect(has_error(&c, "update.keys"), "required");
	cr_expect(has_error(&c, "update.key"), "unknown key");
	update_config_release(&u);
	conf_release(&c);
}
