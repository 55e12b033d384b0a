/* SPDX-License-Identifier: MIT */
/*
 * tapctld's tapdisk processes: spawning, noticing a death, stopping.
 *
 * A tapdisk is started empty (it serves its control socket and waits for
 * `open`), in a session of its own so that it outlives tapctld: a restarted
 * tapctld re-adopts it from the state directory.  A death is noticed
 * through a pidfd watch, or where there is no pidfd_open (kernels before
 * 5.3, valgrind) by a timer that looks every 100 ms.  A tapdisk that exits
 * without being told to is logged, listed among the deaths, and its minor
 * is released; nothing else is touched.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "errors.h"
#include "log.h"
#include "tapctld.h"
#include "tdclient.h"

#define SPAWN_WAIT_S 10
#define POLL_NS (100 * 1000000ull)

int tcd_proc_open(struct tcd_disk *d)
{
	d->pidfd = pidfd_open(d->pid, 0);
	if (d->pidfd >= 0)
		return 0;
	if (errno != ENOSYS)
		return neg_errno();
	d->polled = true;
	return 0;
}

/* Has the process ended?  Never blocks; reaps our own child. */
static bool proc_exited(struct tcd_disk *d)
{
	struct pollfd pfd = { .fd = d->pidfd, .events = POLLIN };

	if (d->reaped)
		return true;
	if (d->child && waitpid(d->pid, &d->exit_status, WNOHANG) == d->pid) {
		d->reaped = true;
		return true;
	}
	if (d->pidfd >= 0)
		return poll(&pfd, 1, 0) == 1;
	if (d->child)
		return false;
	return kill(d->pid, 0) < 0 || tcd_proc_start_ticks(d->pid) != d->start_ticks;
}

/* How a process ended, in words. */
static void describe_exit(struct tcd_disk *d, char *how, size_t size)
{
	proc_exited(d);
	if (!d->reaped)
		snprintf(how, size, "exited (re-adopted: status unknown)");
	else if (WIFSIGNALED(d->exit_status))
		snprintf(how, size, "killed by signal %d", WTERMSIG(d->exit_status));
	else
		snprintf(how, size, "exited with status %d", WEXITSTATUS(d->exit_status));
}

void tcd_record_death(struct tcd_disk *d, const char *how)
{
	struct tcd *t = d->tcd;
	struct tcd_death *x = &t->deaths[t->next_death];

	t->next_death = (t->next_death + 1) % TCD_MAX_DEATHS;
	if (t->nr_deaths < TCD_MAX_DEATHS)
		t->nr_deaths++;
	x->minor = d->minor;
	x->pid = d->pid;
	snprintf(x->spec, sizeof(x->spec), "%s", d->spec);
	snprintf(x->how, sizeof(x->how), "%s", how);
	x->when_s = (uint64_t)time(NULL);
}

/* The tapdisk is gone without being told to. */
static void on_death(struct tcd_disk *d)
{
	char how[64];

	describe_exit(d, how, sizeof(how));
	log_err("tapdisk %d serving minor %d (%s) %s; minor %d released", (int)d->pid, d->minor,
		d->spec[0] ? d->spec : "no image", how, d->minor);
	tcd_record_death(d, how);
	if (d->minor >= 0)
		tcd_xen_disk_gone(d->tcd, d->minor, "its tapdisk died");
	tcd_state_forget(d);
	unlink(d->ctl_path);
	tcd_disk_unlink(d);
	tcd_disk_free(d);
}

static void on_pidfd(struct evloop_watch *w, uint32_t events)
{
	on_death(w->opaque);
}

static void on_poll_timer(struct evloop_timer *tm)
{
	struct tcd *t = tm->opaque;
	struct tcd_disk *d, *next;

	for (d = t->disks; d; d = next) {
		next = d->next;
		if (d->polled && d->supervised && proc_exited(d))
			on_death(d);
	}
}

int tcd_supervise(struct tcd_disk *d)
{
	struct tcd *t = d->tcd;

	d->supervised = true;
	if (d->polled) {
		if (t->nr_polled++ == 0) {
			evloop_timer_init(&t->poll_timer, on_poll_timer, t);
			evloop_timer_arm(t->loop, &t->poll_timer, POLL_NS, POLL_NS);
		}
		return 0;
	}
	d->exit_watch = (struct evloop_watch){
		.fd = d->pidfd, .events = EPOLLIN, .fn = on_pidfd, .opaque = d
	};
	return evloop_watch_add(t->loop, &d->exit_watch);
}

void tcd_unsupervise(struct tcd_disk *d)
{
	if (!d->supervised)
		return;
	d->supervised = false;
	evloop_watch_del(&d->exit_watch);
	if (d->polled && --d->tcd->nr_polled == 0)
		evloop_timer_cancel(&d->tcd->poll_timer);
}

/* Wait up to @ms for the process to end. */
static bool wait_exit(struct tcd_disk *d, int ms)
{
	uint64_t end = evloop_now_ns() + (uint64_t)ms * 1000000;
	struct pollfd pfd = { .fd = d->pidfd, .events = POLLIN };

	while (!proc_exited(d)) {
		if (evloop_now_ns() >= end)
			return false;
		if (d->pidfd >= 0)
			poll(&pfd, 1, 20);
		else
			usleep(10000);
	}
	return true;
}

static void send_signal(struct tcd_disk *d, int sig)
{
	if (d->pidfd < 0 || pidfd_send_signal(d->pidfd, sig, NULL, 0) < 0)
		kill(d->pid, sig);
}

void tcd_proc_stop(struct tcd_disk *d)
{
	int ms = (int)d->tcd->opts.tapdisk_timeout_s * 1000;

	tcd_unsupervise(d);
	send_signal(d, SIGTERM);
	if (wait_exit(d, ms))
		return;
	log_warn("tapdisk %d did not exit on SIGTERM; killing it", (int)d->pid);
	send_signal(d, SIGKILL);
	wait_exit(d, ms);
}

/* In the child: a session of its own, no inherited fds, then the tapdisk. */
static void exec_tapdisk(struct tcd *t)
{
	char path[TCD_SOCK_BYTES];
	char *argv[8];
	int fd;

	setsid();
	fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	close_range(3, ~0u, 0);
	if (tcd_ctl_path(t, getpid(), path, sizeof(path)) < 0)
		_exit(126);
	tdc_argv(t->opts.tapdisk_bin, path, argv);
	execv(argv[0], argv);
	fprintf(stderr, "tapctld: cannot run %s: %m\n", argv[0]);
	_exit(127);
}

/* Wait until the new tapdisk accepts on its socket, or dies. */
static int wait_ready(struct tcd_disk *d, char *err, size_t size)
{
	uint64_t end = evloop_now_ns() + SPAWN_WAIT_S * 1000000000ull;
	char how[64];

	while (tdc_ping(d->ctl_path) < 0) {
		if (wait_exit(d, 20)) {
			describe_exit(d, how, sizeof(how));
			snprintf(err, size, "tapdisk %s %s before serving its control socket",
				 d->tcd->opts.tapdisk_bin, how);
			return -ECHILD;
		}
		if (evloop_now_ns() > end) {
			snprintf(err, size, "tapdisk %d did not open %s within %d s", (int)d->pid,
				 d->ctl_path, SPAWN_WAIT_S);
			return -ETIMEDOUT;
		}
	}
	return 0;
}

uint64_t tcd_proc_start_ticks(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long long v = 0;
	const char *p;
	ssize_t n;
	int fd, i;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	/* After "pid (comm)": field 3 is state; starttime is field 22. */
	for (i = 3; p && i <= 22; i++)
		p = strchr(p + 1, ' ');
	if (p)
		sscanf(p, " %llu", &v);
	return v;
}

int tcd_spawn(struct tcd *t, struct tcd_disk **out, char *err, size_t size)
{
	struct tcd_disk *d = calloc(1, sizeof(*d));
	int rc;

	if (!d)
		return -ENOMEM;
	d->tcd = t;
	d->minor = -1;
	d->pidfd = -1;
	d->child = true;
	d->state = TCD_SPAWNED;
	d->pid = fork();
	if (d->pid < 0) {
		rc = neg_errno();
		snprintf(err, size, "cannot fork a tapdisk: %s", err_str(rc));
		free(d);
		return rc;
	}
	if (d->pid == 0)
		exec_tapdisk(t);
	tcd_ctl_path(t, d->pid, d->ctl_path, sizeof(d->ctl_path));
	rc = tcd_proc_open(d);
	if (rc < 0) {
		snprintf(err, size, "pidfd_open of tapdisk %d: %s", (int)d->pid, err_str(rc));
		goto kill;
	}
	rc = wait_ready(d, err, size);
	if (rc < 0)
		goto kill;
	d->start_ticks = tcd_proc_start_ticks(d->pid);
	rc = tcd_supervise(d);
	if (rc < 0) {
		snprintf(err, size, "cannot watch tapdisk %d: %s", (int)d->pid, err_str(rc));
		goto kill;
	}
	d->next = t->disks;
	t->disks = d;
	tcd_state_save(d);
	log_info("tapdisk %d spawned (control socket %s)", (int)d->pid, d->ctl_path);
	*out = d;
	return 0;
kill:
	kill(d->pid, SIGKILL);
	if (!d->reaped)
		waitpid(d->pid, NULL, 0);
	unlink(d->ctl_path);
	tcd_disk_free(d);
	return rc;
}
