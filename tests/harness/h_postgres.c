/* h_postgres.c: a throwaway PostgreSQL cluster for tests and benchmarks (h_postgres.h). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "h_postgres.h"

#define SERVER_USER "postgres" /* the OS user the server runs as, when we are root */
#define SUPERUSER   "postgres" /* the cluster's superuser, whoever runs it */

/* PostgreSQL's programs: pg_config --bindir, else the newest /usr/lib/postgresql/N/bin. */
static const char *bindir(void)
{
	static char dir[256];
	static bool looked;
	FILE *p;

	if (looked)
		return dir[0] ? dir : NULL;
	looked = true;
	p = popen("pg_config --bindir 2>/dev/null", "r");
	if (p != NULL) {
		if (fgets(dir, sizeof(dir), p) == NULL)
			dir[0] = '\0';
		dir[strcspn(dir, "\n")] = '\0';
		pclose(p);
	}
	if (dir[0] == '\0') {
		glob_t g;

		if (glob("/usr/lib/postgresql/*/bin", 0, NULL, &g) == 0 && g.gl_pathc > 0)
			snprintf(dir, sizeof(dir), "%s", g.gl_pathv[g.gl_pathc - 1]);
		globfree(&g);
	}
	return dir[0] ? dir : NULL;
}

/* bindir/name, in one of 4 rotating static buffers. */
static const char *program(const char *name)
{
	static char bufs[4][320];
	static unsigned next;
	char *b = bufs[next++ % 4];

	snprintf(b, sizeof(bufs[0]), "%s/%s", bindir() ? bindir() : "/nonexistent", name);
	return b;
}

const char *h_postgres_missing(void)
{
	static char why[512];
	const char *need[] = { "initdb", "pg_ctl", "postgres", "psql" };

	if (bindir() == NULL)
		return "PostgreSQL is not installed (apt install postgresql): "
		       "no pg_config --bindir, no /usr/lib/postgresql/*/bin";
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
		if (access(program(need[i]), X_OK) != 0) {
			snprintf(why, sizeof(why),
				 "PostgreSQL's server is not installed (apt install postgresql): "
				 "%s: %s",
				 program(need[i]), strerror(errno));
			return why;
		}
	if (geteuid() == 0 && getpwnam(SERVER_USER) == NULL)
		return "running as root and there is no \"" SERVER_USER "\" user to run initdb and "
		       "the server as (initdb refuses root)";
	return NULL;
}

/* In a child: execv of a writable copy of 'argv' (exec wants one); exits if it fails. */
static _Noreturn void exec_copy(const char *const argv[])
{
	char *args[16];
	size_t n = 0;

	while (argv[n] != NULL && n < 15) {
		args[n] = strdup(argv[n]);
		n++;
	}
	args[n] = NULL;
	execv(args[0], args);
	fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

/* Waits for the child 'pid': its exit status, 128 + the signal that ended it, or -1. */
static int wait_status(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/*
 * Runs argv (argv[0] a path) in 'cwd', as the server user when we are root, with stdout and
 * stderr appended to 'log' (NULL: /dev/null). Its exit status, or -1.
 */
static int run_as_server(const char *cwd, const char *log, const char *const argv[])
{
	const struct passwd *pw = geteuid() == 0 ? getpwnam(SERVER_USER) : NULL;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd;

		if (pw != NULL &&
		    (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0))
			_exit(126);
		if (cwd != NULL && chdir(cwd) != 0)
			_exit(126);
		fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0) {
			dup2(fd, 0);
			close(fd);
		}
		if (pw != NULL) {
			setenv("HOME", pw->pw_dir, 1);
			setenv("USER", pw->pw_name, 1);
			setenv("LOGNAME", pw->pw_name, 1);
		}
		exec_copy(argv);
	}
	return wait_status(pid);
}

/* The last non-empty line of 'path' (for a failure's why), or "". */
static void last_line(const char *path, char *out, size_t cap)
{
	char line[512];
	FILE *f = fopen(path, "r");

	out[0] = '\0';
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0] != '\0')
			snprintf(out, cap, "%s", line);
	}
	fclose(f);
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

/* rm -rf 'dir'. 0 or -1. */
static int remove_tree(const char *dir)
{
	if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
		return -1;
	return 0;
}

/* The postmaster's pid from data/postmaster.pid, or 0. */
static pid_t postmaster_pid(const char *dir)
{
	char path[128];
	long pid = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/data/postmaster.pid", dir);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	if (fscanf(f, "%ld", &pid) != 1)
		pid = 0;
	fclose(f);
	return (pid_t)pid;
}

/* pg_ctl stop in 'mode' ("fast", "immediate"). Its exit status. */
static int pg_ctl_stop(const char *dir, const char *mode)
{
	char data[96], log[96];
	const char *argv[] = {
		program("pg_ctl"), "-D", data, "-m", mode, "-w", "-t", "60", "stop", NULL
	};

	snprintf(data, sizeof(data), "%s/data", dir);
	snprintf(log, sizeof(log), "%s/pg_ctl.log", dir);
	return run_as_server(dir, log, argv);
}

/*
 * The watchdog: a grandchild (not ours to reap, out of our session so that a ^C to the test
 * spares it) that waits until the pipe closes, which it does when we close it or die. Then, if
 * the cluster is still there, stops it and removes the dir.
 */
static int watchdog_start(struct h_postgres *pg)
{
	int fds[2], status;
	pid_t child;

	if (pipe2(fds, O_CLOEXEC) != 0)
		return -1;
	fflush(NULL);
	child = fork();
	if (child < 0) {
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (child == 0) {
		char byte;

		if (fork() != 0)
			_exit(0);
		setsid();
		signal(SIGINT, SIG_IGN);
		signal(SIGHUP, SIG_IGN);
		signal(SIGTERM, SIG_IGN);
		close(fds[1]);
		for (int fd = 3; fd < 1024; fd++)
			if (fd != fds[0])
				close(fd);
		for (;;) {
			ssize_t n = read(fds[0], &byte, 1);

			if (n == 0 || (n < 0 && errno != EINTR))
				break;
		}
		if (access(pg->dir, F_OK) == 0) {
			if (postmaster_pid(pg->dir) > 0)
				pg_ctl_stop(pg->dir, "immediate");
			remove_tree(pg->dir);
		}
		_exit(0);
	}
	close(fds[0]);
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	pg->watch_fd = fds[1];
	return 0;
}

int h_postgres_start(struct h_postgres *pg, char *why, size_t cap)
{
	const struct passwd *pw = geteuid() == 0 ? getpwnam(SERVER_USER) : NULL;
	const char *missing = h_postgres_missing();
	char data[96], log[96], conf[128], line[512];
	FILE *f;
	int rc;

	memset(pg, 0, sizeof(*pg));
	pg->watch_fd = -1;
	if (missing != NULL) {
		snprintf(why, cap, "%s", missing);
		return -1;
	}
	strcpy(pg->dir, "/tmp/gd-pg-XXXXXX");
	if (mkdtemp(pg->dir) == NULL) {
		snprintf(why, cap, "mkdtemp %s: %s", pg->dir, strerror(errno));
		pg->dir[0] = '\0';
		return -1;
	}
	if (pw != NULL && chown(pg->dir, pw->pw_uid, pw->pw_gid) != 0) {
		snprintf(why, cap, "chown %s to %s: %s", pg->dir, SERVER_USER, strerror(errno));
		goto fail;
	}
	if (watchdog_start(pg) != 0) {
		snprintf(why, cap, "cannot start the watchdog: %s", strerror(errno));
		goto fail;
	}
	snprintf(data, sizeof(data), "%s/data", pg->dir);
	snprintf(log, sizeof(log), "%s/initdb.log", pg->dir);
	{
		/* --no-sync: initdb's own files are not flushed (a throwaway cluster); the server
		 * runs with fsync on. */
		const char *argv[] = {
			program("initdb"), "-D", data,	 "-U",	       SUPERUSER,   "-A",
			"trust",	   "-E", "UTF8", "--locale=C", "--no-sync", NULL
		};

		rc = run_as_server(pg->dir, log, argv);
	}
	if (rc != 0) {
		last_line(log, line, sizeof(line));
		snprintf(why, cap, "initdb failed (status %d): %s", rc, line);
		goto fail;
	}
	snprintf(conf, sizeof(conf), "%s/postgresql.conf", data);
	f = fopen(conf, "a");
	if (f == NULL) {
		snprintf(why, cap, "%s: %s", conf, strerror(errno));
		goto fail;
	}
	fprintf(f,
		"\n# h_postgres: a Unix socket in the temp dir only, and durable commits.\n"
		"listen_addresses = ''\n"
		"unix_socket_directories = '%s'\n"
		"unix_socket_permissions = 0700\n"
		"fsync = on\n"
		"synchronous_commit = on\n"
		"max_connections = 100\n",
		pg->dir);
	fclose(f);
	snprintf(log, sizeof(log), "%s/server.log", pg->dir);
	{
		const char *argv[] = { program("pg_ctl"), "-D", data, "-l", log, "-w", "-t", "60",
				       "start",		  NULL };
		char ctl_log[96];

		snprintf(ctl_log, sizeof(ctl_log), "%s/pg_ctl.log", pg->dir);
		rc = run_as_server(pg->dir, ctl_log, argv);
	}
	pg->postmaster = postmaster_pid(pg->dir);
	if (rc != 0 || pg->postmaster <= 0) {
		last_line(log, line, sizeof(line));
		snprintf(why, cap, "pg_ctl start failed (status %d): %s", rc, line);
		goto fail;
	}
	return 0;
fail:
	h_postgres_stop(pg);
	return -1;
}

int h_postgres_stop(struct h_postgres *pg)
{
	pid_t pid;
	int rc = 0;

	if (pg->dir[0] == '\0')
		return 0;
	pid = postmaster_pid(pg->dir);
	if (pid <= 0)
		pid = pg->postmaster;
	if (pid > 0) {
		pg_ctl_stop(pg->dir, "fast");
		/* pg_ctl -w returns once postmaster.pid is gone; the process follows at once. */
		for (int i = 0; i < 100 && kill(pid, 0) == 0; i++) {
			struct timespec ts = { .tv_nsec = 50 * 1000000L };

			nanosleep(&ts, NULL);
		}
		if (kill(pid, 0) == 0) {
			fprintf(stderr,
				"h_postgres: postmaster %d of %s outlived pg_ctl stop: killed\n",
				(int)pid, pg->dir);
			kill(pid, SIGKILL);
			rc = -1;
		}
	}
	if (remove_tree(pg->dir) != 0) {
		fprintf(stderr, "h_postgres: cannot remove %s: %s\n", pg->dir, strerror(errno));
		rc = -1;
	}
	if (pg->watch_fd >= 0)
		close(pg->watch_fd); /* the watchdog finds no dir and exits */
	pg->watch_fd = -1;
	pg->dir[0] = '\0';
	pg->postmaster = 0;
	return rc;
}

int h_postgres_sql(const char *conninfo, const char *sql)
{
	const char *argv[] = { program("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d",
			       conninfo,	"-c", sql,  NULL };
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		if (fd >= 0) {
			dup2(fd, 1); /* psql's output; its errors stay on stderr */
			close(fd);
		}
		exec_copy(argv);
	}
	return wait_status(pid);
}

int h_postgres_createdb(const char *dir, char *conninfo, size_t cap)
{
	static unsigned made;
	char admin[160], sql[96], name[48];

	snprintf(name, sizeof(name), "gd_%d_%u", (int)getpid(), made++);
	snprintf(admin, sizeof(admin), "host=%s dbname=postgres user=" SUPERUSER, dir);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
	if (h_postgres_sql(admin, sql) != 0)
		return -1;
	snprintf(conninfo, cap, "host=%s dbname=%s user=" SUPERUSER, dir, name);
	return 0;
}
