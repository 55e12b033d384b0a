/* SPDX-License-Identifier: MIT */
/*
 * tapdisk: one process per virtual disk (ARCHITECTURE.md §1, §5).
 *
 *   tapdisk -a TYPE:PATH [options]   serve one image (standalone)
 *   tapdisk --ctl SOCKET [options]   wait for `open` on SOCKET (spawned by
 *                                    tapctld, like blktap's spawn + open)
 *
 * Without -f the process becomes a daemon only once the image and the
 * control socket are ready, so that a failure is reported on the terminal
 * with a non-zero exit, and `tapdisk ... && next` can rely on the socket.
 * SIGTERM and SIGINT shut down cleanly: frontends detach (their requests
 * complete or fail), the chain is flushed and closed, the socket and the
 * pid file removed.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "aio-rec.h"
#include "cli.h"
#include "ctl.h"
#include "errors.h"
#include "evloop.h"
#include "log.h"
#include "tapdisk.h"

/* ---- daemon ---- */

/*
 * Fork; the parent waits for the child to say it is ready (exit 0) or
 * failed (exit 1), so the caller of `tapdisk` sees the outcome.  Returns in
 * the child with *@ready_fd to report on; -errno if the fork fails.
 */
static int daemon_start(int *ready_fd)
{
	int p[2];
	pid_t pid;
	char status = 1;

	if (pipe2(p, O_CLOEXEC) < 0)
		return neg_errno();
	pid = fork();
	if (pid < 0)
		return neg_errno();
	if (pid > 0) {
		close(p[1]);
		if (read(p[0], &status, 1) != 1)
			status = 1; /* the child died before saying anything */
		_exit(status);
	}
	close(p[0]);
	setsid();
	*ready_fd = p[1];
	return 0;
}

/* Tell the parent; once ready, let go of the terminal and log to syslog. */
static void daemon_ready(int ready_fd, bool ok)
{
	char status = ok ? 0 : 1;
	int null;

	if (ready_fd < 0)
		return;
	if (ok) {
		null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			dup2(null, 2);
			close(null);
		}
		log_set_dest(LOG_DEST_SYSLOG);
	}
	if (write(ready_fd, &status, 1) != 1)
		log_warn("cannot report readiness to the parent: %m");
	close(ready_fd);
}

/* ---- pid file ---- */

static int pidfile_write(const char *path)
{
	char tmp[4096], line[32];
	int fd, len;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		log_err("pid file %s: %m", tmp);
		return neg_errno();
	}
	len = snprintf(line, sizeof(line), "%d\n", (int)getpid());
	if (write(fd, line, (size_t)len) != len || close(fd) < 0 || rename(tmp, path) < 0) {
		log_err("pid file %s: %m", path);
		unlink(tmp);
		return -EIO;
	}
	return 0;
}

/* ---- signals ---- */

struct sigs {
	struct evloop_watch w;
	struct tapdisk *td;
};

static void on_signal(struct evloop_watch *w, uint32_t events)
{
	struct sigs *s = w->opaque;
	struct signalfd_siginfo si;

	while (read(w->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			log_info("SIGHUP ignored");
			continue;
		}
		log_info("%s: shutting down", strsignal((int)si.ssi_signo));
		tapdisk_request_quit(s->td);
	}
}

/* Signals arrive through a signalfd on the loop; every thread blocks them. */
static int signals_init(struct tapdisk *td, struct sigs *s)
{
	sigset_t set;
	int fd;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0) {
		log_err("signalfd: %m");
		return neg_errno();
	}
	s->td = td;
	s->w = (struct evloop_watch){ .fd = fd, .events = EPOLLIN, .fn = on_signal, .opaque = s };
	return evloop_watch_add(td->loop, &s->w);
}

/* ---- the process ---- */

static int start(struct tapdisk *td)
{
	int err;

	if (td->spec) {
		err = tapdisk_open(td, td->spec, &td->opts);
		if (err) {
			log_err("cannot serve %s: %s", td->spec, err_str(err));
			return err;
		}
	}
	if (td->ctl_path) {
		err = td_ctl_listen(td, td->ctl_path, &td->ctl);
		if (err)
			return err;
	}
	if (td->pidfile)
		return pidfile_write(td->pidfile);
	return 0;
}

static void stop(struct tapdisk *td)
{
	td_ctl_free(td->ctl);
	td->ctl = NULL;
	tapdisk_close(td);
	if (td->pidfile)
		unlink(td->pidfile);
}

static int serve(struct tapdisk *td, int ready_fd)
{
	struct sigs sigs = { .w = { .fd = -1 } };
	struct aio_rec *rec;
	int err;

	/* QTAP_RECORD=LOG: the crash harness's recorder (lib/aio-rec.h) */
	err = aio_rec_start_env(&rec);
	if (!err)
		err = evloop_new(&td->loop);
	if (!err)
		err = signals_init(td, &sigs);
	if (!err)
		err = start(td);
	daemon_ready(ready_fd, err == 0);
	while (!err && !td->quit) {
		err = evloop_run(td->loop);
		if (err)
			log_err("control loop failed: %s; shutting down", err_str(err));
	}
	stop(td);
	if (aio_rec_free(rec) && !err)
		err = -EIO;
	if (sigs.w.fd >= 0) {
		evloop_watch_del(&sigs.w);
		close(sigs.w.fd);
	}
	evloop_free(td->loop);
	return err;
}

int main(int argc, char **argv)
{
	struct tapdisk td = { .started = time(NULL) };
	int ready_fd = -1, rc;

	log_init("tapdisk");
	rc = tapdisk_cli_parse(&td, argc, argv);
	if (rc) {
		free(td.drv_opts);
		return rc > 0 ? 0 : 1;
	}
	if (!td.foreground && daemon_start(&ready_fd) < 0) {
		fprintf(stderr, "tapdisk: cannot fork: %s\n", strerror(errno));
		return 1;
	}
	rc = serve(&td, ready_fd);
	free(td.drv_opts);
	return rc ? 1 : 0;
}
