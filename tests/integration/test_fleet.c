/* test_fleet.c: three `guardian-service serve` instances on one service directory (one store)
 * share a fleet's load through the $share subscription on one mosquitto: every round succeeds,
 * each instance answers a share, and no nonce is accepted twice, whichever instance gets it. The
 * same suite for each store backend. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness/h_postgres.h"
#include "../harness/harness.h"
#include "site.h"

#define INSTANCES 3
#define ROUNDS	  600
#define REPLAYS	  30
#define RACES	  20

static struct h_postgres cluster = { .watch_fd = -1 };

/* The instances first (they hold connections to the cluster), then the cluster. */
static void teardown(void)
{
	it_teardown();
	h_postgres_stop(&cluster);
}

TestSuite(fleet, .fini = teardown, .timeout = 300);

static void three_instances_share_the_load(const char *store, const char *init_args)
{
	struct h_fleet f;
	char args[256];
	const char *out = h_path("fleetsim.out");
	size_t answered[INSTANCES], total = 0, replays_refused = 0;
	int instances_refusing_replays = 0;

	cr_assert_eq(h_fleet_up(&f, store, init_args), 0, "setup failed; see %s", f.steps);
	cr_assert_eq(h_fleet_serve(&f, INSTANCES), 0, "setup failed; see %s", f.steps);
	/* 60 devices on 3 shared connections, 24 rounds outstanding at a time. */
	snprintf(args, sizeof(args),
		 "--devices 60 --connections 3 --window 24 --rounds %d --replay %d --race %d "
		 "--timeout-ms 20000",
		 ROUNDS, REPLAYS, RACES);
	cr_assert_eq(h_fleet_run(&f, args, out, 240000), 0, "fleetsim failed; see %s", out);

	/* Every round accepted, none lost, nothing answered that was not asked. */
	cr_expect_eq(h_fleet_result(out, "rounds"), ROUNDS, "accepted rounds; see %s", out);
	cr_expect_eq(h_fleet_result(out, "timed_out"), 0, "rounds without an answer; see %s", out);
	cr_expect_eq(h_fleet_result(out, "stray"), 0, "unexpected answers; see %s", out);
	/* The only refusals are the second evidence of each race. */
	cr_expect_eq(h_fleet_result(out, "refused"), RACES, "refusals; see %s", out);

	/* No nonce accepted twice: a replayed accepted evidence is refused, and of two evidences
	 * for one nonce sent at once (to whichever instances the broker hands them) one wins. */
	cr_expect_eq(h_fleet_result(out, "nonce_twice"), 0, "a nonce was accepted twice");
	cr_expect_eq(h_fleet_result(out, "replay_sent"), REPLAYS);
	cr_expect_eq(h_fleet_result(out, "replay_refused"), REPLAYS,
		     "replays not refused replayed_nonce; see %s", out);
	cr_expect_eq(h_fleet_result(out, "replay_accepted"), 0, "a replay was accepted");
	cr_expect_eq(h_fleet_result(out, "race_one_ok"), RACES, "races; see %s", out);
	cr_expect_eq(h_fleet_result(out, "race_two_ok"), 0, "both evidences for a nonce accepted");

	/* Each instance answered a share, none all; together exactly what fleetsim got. */
	for (int i = 0; i < INSTANCES; i++) {
		size_t refused_here = h_count(f.serve_log[i], "refused: replayed_nonce");

		answered[i] = h_fleet_answered(&f, i);
		total += answered[i];
		replays_refused += refused_here;
		instances_refusing_replays += refused_here > 0;
	}
	for (int i = 0; i < INSTANCES; i++) {
		cr_expect_gt(answered[i], 0, "instance %d answered nothing; see %s", i,
			     f.serve_log[i]);
		cr_expect_lt(answered[i], total, "instance %d answered everything", i);
	}
	cr_expect_eq(total, ROUNDS + RACES, "certificates issued by the instances: %zu", total);
	cr_expect_eq(replays_refused, REPLAYS + RACES, "replayed_nonce refusals in the logs");
	cr_expect_geq(instances_refusing_replays, 2,
		      "replays were refused by one instance only: the shared store was not tested");
	h_fleet_down(&f);
}

Test(fleet, three_instances_share_the_load_files)
{
	three_instances_share_the_load("files", "--store files");
}

Test(fleet, three_instances_share_the_load_sqlite)
{
	three_instances_share_the_load("sqlite", "--store sqlite");
}

Test(fleet, three_instances_share_the_load_postgresql)
{
	char why[512], conninfo[256], init_args[400];
	const char *missing = h_postgres_missing();

	if (missing != NULL)
		cr_skip_test("%s", missing);
	cr_assert_eq(h_postgres_start(&cluster, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(h_postgres_createdb(cluster.dir, conninfo, sizeof(conninfo)), 0,
		     "CREATE DATABASE failed");
	snprintf(init_args, sizeof(init_args), "--store postgresql --conninfo '%s'", conninfo);
	three_instances_share_the_load("postgresql", init_args);
}

/*
 * A burst: 300 devices ask at once, one instance on SQLite. `serve` answers them in one batch, so
 * more answers wait in Paho's queue than its default bound (100): every one must still go out.
 */
Test(fleet, a_burst_of_300_devices_gets_every_answer)
{
	struct h_fleet f;
	const char *out = h_path("fleetsim.out");

	cr_assert_eq(h_fleet_up(&f, "burst", "--store sqlite"), 0, "setup failed; see %s", f.steps);
	cr_assert_eq(h_fleet_serve(&f, 1), 0, "setup failed; see %s", f.steps);
	cr_assert_eq(h_fleet_run(&f,
				 "--devices 300 --connections 3 --window 300 --rounds 900 "
				 "--timeout-ms 20000",
				 out, 240000),
		     0, "fleetsim failed; see %s", out);
	cr_expect_eq(h_fleet_result(out, "rounds"), 900, "accepted rounds; see %s", out);
	cr_expect_eq(h_fleet_result(out, "timed_out"), 0, "rounds without an answer; see %s and %s",
		     out, f.serve_log[0]);
	cr_expect_eq(h_count(f.serve_log[0], "cannot publish"), 0, "answers dropped; see %s",
		     f.serve_log[0]);
	h_fleet_down(&f);
}
