/* h_postgres.h: a throwaway PostgreSQL cluster for tests and benchmarks: initdb as the postgres
 * user into a temp dir, a server on a Unix socket in that dir only (no TCP), removed at the end. */
#ifndef H_POSTGRES_H
#define H_POSTGRES_H

#include <stddef.h>
#include <sys/types.h>

/* Where a process that started a cluster tells the processes it starts (Criterion's workers)
 * the cluster's directory. */
#define H_POSTGRES_ENV "GUARDIAN_TEST_POSTGRES"

struct h_postgres {
	char dir[64];	  /* /tmp/gd-pg-XXXXXX: data/, the socket, the logs; "" if not started */
	pid_t postmaster; /* from data/postmaster.pid */
	int watch_fd;	  /* the write end of the watchdog's pipe (-1: none) */
};

/*
 * NULL when a cluster can be started here, else why not, for a test to skip with: PostgreSQL's
 * programs are not installed, or this process is root and there is no postgres user to run
 * the server as (initdb refuses root).
 */
const char *h_postgres_missing(void);

/*
 * initdb (as the postgres user when root, else as this user; superuser "postgres", trust on the
 * socket only, locale C, UTF8) and `pg_ctl -w start`: listen_addresses '', the socket in
 * pg->dir, fsync and synchronous_commit on. A watchdog process stops the cluster and removes the
 * dir should this process die without h_postgres_stop. 0, or -1 with 'why' (nothing left).
 */
int h_postgres_start(struct h_postgres *pg, char *why, size_t cap);

/*
 * `pg_ctl stop -m fast`, then checks that the postmaster is gone (kills it if not) and removes
 * the dir. 0, or -1 when the postmaster outlived pg_ctl or the dir could not be removed (said on
 * stderr). No operation if 'pg' was not started.
 */
int h_postgres_stop(struct h_postgres *pg);

/*
 * A fresh database on the cluster whose socket is in 'dir' (pg->dir, also from another
 * process), and its conninfo "host=<dir> dbname=<name> user=postgres" in 'conninfo'. 0 or -1.
 */
int h_postgres_createdb(const char *dir, char *conninfo, size_t cap);

/* Runs 'sql' (psql -c) on the database 'conninfo' names. 0, or psql's exit status. */
int h_postgres_sql(const char *conninfo, const char *sql);

#endif
