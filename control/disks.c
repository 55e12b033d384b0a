/* SPDX-License-Identifier: MIT */
/*
 * tapctld's disks: one tapdisk process each (see tapctld.h).
 *
 * A tapdisk is started empty (it serves its control socket and waits for
 * `open`), in a session of its own so that it outlives tapctld: a restarted
 * tapctld re-adopts it from the state directory.  Supervision is a pidfd
 * watch: a tapdisk that exits without being told to is logged, listed
 * among the deaths, and its minor is released; nothing else is touched.
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

const char *tcd_state_name(enum tcd_state s)
{
	switch (s) {
	case TCD_SPAWNED:
		return "spawned";
	case TCD_ATTACHED:
		return "attached";
	case TCD_RUNNING:
		return "running";
	case TCD_PAUSED:
		return "paused";
	}
	return "?";
}

struct tcd_disk *tcd_disk_by_minor(struct tcd *t, int minor)
{
	struct tcd_disk *d;

	for (d = t->disks; d; d = d->next)
		if (d->minor == minor && minor >= 0)
			return d;
	return NULL;
}

struct tcd_disk *tcd_disk_by_pid(struct tcd *t, pid_t pid)
{
	struct tcd_disk *d;

	for (d = t->disks; d; d = d->next)
		if (d->pid == pid)
			return d;
	return NULL;
}

static void unlink_disk(struct tcd_disk *d)
{
	struct tcd_disk **pp;

	for (pp = &d->tcd->disks; *pp; pp = &(*pp)->next) {
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	}
}

void tcd_disk_free(struct tcd_disk *d)
{
	if (!d)
		return;
	evloop_watch_del(&d->exit_watch);
	if (d->pidfd >= 0)
		close(d->pidfd);
	json_decref(d->open_args);
	free(d);
}

/* How a process ended, in words; reaps it if it is our child. */
static void describe_exit(struct tcd_disk *d, char *how, size_t size)
{
	int status;

	if (!d->child || waitpid(d->pid, &status, WNOHANG) != d->pid) {
		snprintf(how, size, "exited (re-adopted: status unknown)");
		return;
	}
	if (WIFSIGNALED(status))
		snprintf(how, size, "killed by signal %d", WTERMSIG(status));
	else
		snprintf(how, size, "exited with status %d", WEXITSTATUS(status));
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

/* The pidfd became readable: the tapdisk is gone without being told to. */
static void on_exit_event(struct evloop_watch *w, uint32_t events)
{
	struct tcd_disk *d = w->opaque;
	char how[64];

	describe_exit(d, how, sizeof(how));
	log_err("tapdisk %d serving minor %d (%s) %s; minor %d released", (int)d->pid, d->minor,
		d->spec[0] ? d->spec : "no image", how, d->minor);
	tcd_record_death(d, how);
	if (d->minor >= 0)
		tcd_xen_disk_gone(d->tcd, d->minor);
	tcd_state_forget(d);
	unlink(d->ctl_path);
	unlink_disk(d);
	tcd_disk_free(d);
}

int tcd_supervise(struct tcd_disk *d)
{
	d->exit_watch = (struct evloop_watch){
		.fd = d->pidfd, .events = EPOLLIN, .fn = on_exit_event, .opaque = d
	};
	return evloop_watch_add(d->tcd->loop, &d->exit_watch);
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
	struct pollfd pfd = { .fd = d->pidfd, .events = POLLIN };

	while (tdc_ping(d->ctl_path) < 0) {
		if (poll(&pfd, 1, 20) > 0) {
			char how[64];

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
	d->pidfd = pidfd_open(d->pid, 0);
	if (d->pidfd < 0) {
		rc = neg_errno();
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
	waitpid(d->pid, NULL, 0);
	unlink(d->ctl_path);
	tcd_disk_free(d);
	return rc;
}

int tcd_attach(struct tcd *t, struct tcd_disk *d, int minor, char *err, size_t size)
{
	struct tcd_disk *other;

	if (d->minor >= 0) {
		snprintf(err, size, "tapdisk %d already has minor %d", (int)d->pid, d->minor);
		return -EBUSY;
	}
	if (minor < 0) {
		for (minor = 0; minor < TCD_MAX_MINORS && tcd_disk_by_minor(t, minor); minor++)
			;
		if (minor == TCD_MAX_MINORS) {
			snprintf(err, size, "all %d minors are in use", TCD_MAX_MINORS);
			return -ENOSPC;
		}
	}
	if (minor >= TCD_MAX_MINORS) {
		snprintf(err, size, "minor %d is out of range (0 to %d)", minor,
			 TCD_MAX_MINORS - 1);
		return -EINVAL;
	}
	other = tcd_disk_by_minor(t, minor);
	if (other) {
		snprintf(err, size, "minor %d is in use by tapdisk %d", minor, (int)other->pid);
		return -EBUSY;
	}
	d->minor = minor;
	d->state = TCD_ATTACHED;
	tcd_state_save(d);
	return 0;
}

/* The exports the open arguments ask for, once the image is open. */
static int add_exports(struct tcd_disk *d, const json_t *args, char *err, size_t size)
{
	unsigned tmo = d->tcd->opts.tapdisk_timeout_s;
	json_t *v;
	size_t i;
	int rc;

	json_array_foreach(json_object_get(args, "nbd"), i, v)
	{
		rc = tdc_export_add(d->ctl_path, "nbd", json_string_value(v), tmo, err, size);
		if (rc < 0)
			return rc;
	}
	v = json_object_get(args, "fuse");
	if (json_is_string(v))
		return tdc_export_add(d->ctl_path, "fuse", json_string_value(v), tmo, err, size);
	return 0;
}

int tcd_open(struct tcd_disk *d, const char *spec, json_t *args, char *err, size_t size)
{
	unsigned tmo = d->tcd->opts.tapdisk_timeout_s;
	char ignore[256];
	int rc;

	if (d->state != TCD_ATTACHED) {
		snprintf(err, size, "minor %d is %s: open needs an attached disk with no image",
			 d->minor, tcd_state_name(d->state));
		return -EBUSY;
	}
	rc = tdc_open(d->ctl_path, spec, args, tmo, err, size);
	if (rc < 0)
		return rc;
	rc = add_exports(d, args, err, size);
	if (rc < 0) {
		tdc_call(d->ctl_path, "close", NULL, tmo, NULL, ignore, sizeof(ignore));
		return rc;
	}
	json_decref(d->open_args);
	d->open_args = json_incref(args);
	snprintf(d->spec, sizeof(d->spec), "%s", spec);
	d->state = TCD_RUNNING;
	tcd_state_save(d);
	log_info("minor %d: %s open in tapdisk %d", d->minor, spec, (int)d->pid);
	return 0;
}

int tcd_close(struct tcd_disk *d, char *err, size_t size)
{
	int rc;

	if (d->state != TCD_RUNNING && d->state != TCD_PAUSED) {
		snprintf(err, size, "minor %d has no image open", d->minor);
		return -EINVAL;
	}
	tcd_xen_disk_gone(d->tcd, d->minor);
	rc = tdc_call(d->ctl_path, "close", NULL, d->tcd->opts.tapdisk_timeout_s, NULL, err, size);
	if (rc < 0)
		return rc;
	log_info("minor %d: %s closed", d->minor, d->spec);
	d->spec[0] = '\0';
	json_decref(d->open_args);
	d->open_args = NULL;
	d->state = TCD_ATTACHED;
	tcd_state_save(d);
	return 0;
}

int tcd_pause(struct tcd_disk *d, char *err, size_t size)
{
	int rc;

	if (d->state != TCD_RUNNING) {
		snprintf(err, size, "minor %d is %s: only a running disk can be paused", d->minor,
			 tcd_state_name(d->state));
		return d->state == TCD_PAUSED ? -EALREADY : -EINVAL;
	}
	rc = tdc_call(d->ctl_path, "pause", NULL, d->tcd->opts.tapdisk_timeout_s, NULL, err, size);
	if (rc < 0)
		return rc;
	d->state = TCD_PAUSED;
	tcd_state_save(d);
	log_info("minor %d: paused (%s released)", d->minor, d->spec);
	return 0;
}

int tcd_resume(struct tcd_disk *d, const char *new_spec, char *err, size_t size)
{
	unsigned tmo = d->tcd->opts.tapdisk_timeout_s;
	struct tdc_info before, after;
	json_t *a = json_object();
	char ignore[256];
	bool sized;
	int rc;

	if (d->state != TCD_PAUSED) {
		snprintf(err, size, "minor %d is %s: only a paused disk can be unpaused", d->minor,
			 tcd_state_name(d->state));
		json_decref(a);
		return -EINVAL;
	}
	if (!a || (new_spec && json_object_set_new(a, "spec", json_string(new_spec)) < 0)) {
		json_decref(a);
		return -ENOMEM;
	}
	sized = tdc_info(d->ctl_path, tmo, &before, ignore, sizeof(ignore)) == 0;
	rc = tdc_call(d->ctl_path, "resume", a, tmo, NULL, err, size);
	json_decref(a);
	if (rc < 0)
		return rc;
	if (new_spec)
		snprintf(d->spec, sizeof(d->spec), "%s", new_spec);
	d->state = TCD_RUNNING;
	tcd_state_save(d);
	log_info("minor %d: unpaused (%s)", d->minor, d->spec);
	if (tdc_info(d->ctl_path, tmo, &after, ignore, sizeof(ignore)) == 0 &&
	    (!sized || after.size_bytes != before.size_bytes))
		tcd_xen_resized(d->tcd, d->minor);
	return 0;
}

/* Ask the tapdisk to exit; SIGKILL if it has not within the timeout. */
static void stop_tapdisk(struct tcd_disk *d)
{
	struct pollfd pfd = { .fd = d->pidfd, .events = POLLIN };
	int ms = (int)d->tcd->opts.tapdisk_timeout_s * 1000;

	evloop_watch_del(&d->exit_watch);
	if (pidfd_send_signal(d->pidfd, SIGTERM, NULL, 0) == 0 && poll(&pfd, 1, ms) == 1)
		goto reap;
	log_warn("tapdisk %d did not exit on SIGTERM; killing it", (int)d->pid);
	pidfd_send_signal(d->pidfd, SIGKILL, NULL, 0);
	poll(&pfd, 1, ms);
reap:
	if (d->child)
		waitpid(d->pid, NULL, WNOHANG);
}

int tcd_detach(struct tcd_disk *d, char *err, size_t size)
{
	if (d->state == TCD_RUNNING || d->state == TCD_PAUSED) {
		snprintf(err, size, "minor %d still has %s open: close it first", d->minor,
			 d->spec);
		return -EBUSY;
	}
	stop_tapdisk(d);
	log_info("tapdisk %d (minor %d) stopped", (int)d->pid, d->minor);
	tcd_state_forget(d);
	unlink(d->ctl_path);
	unlink_disk(d);
	tcd_disk_free(d);
	return 0;
}

json_t *tcd_disk_json(struct tcd_disk *d)
{
	char xen[512];
	json_t *o;

	o = json_pack("{s:i, s:i, s:s, s:s, s:s}", "minor", d->minor, "pid", (int)d->pid, "state",
		      tcd_state_name(d->state), "spec", d->spec, "ctl", d->ctl_path);
	if (!o)
		return NULL;
	if (d->open_args)
		json_object_set(o, "args", d->open_args);
	tcd_xen_describe(d->tcd, d->minor, xen, sizeof(xen));
	if (xen[0])
		json_object_set_new(o, "xen", json_string(xen));
	return o;
}
