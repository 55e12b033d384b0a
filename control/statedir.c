/* SPDX-License-Identifier: MIT */
/*
 * tapctld's state directory (default /run/qtap): one record per tapdisk,
 * tapdisk-PID.json, next to its control socket tapdisk-PID.sock, and the
 * daemon's lock file.  A record is rewritten (write, then rename) on every
 * change of its disk, so a tapctld that is killed and restarted finds each
 * tapdisk's minor, state, image and export arguments, and re-adopts the
 * ones still running: same pid, same start time (a reused pid is not
 * mistaken for it), control socket answering.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctlproto.h"
#include "errors.h"
#include "log.h"
#include "tapctld.h"
#include "tdclient.h"

int tcd_state_lock(struct tcd *t)
{
	char path[PATH_MAX];
	int rc;

	if (mkdir(t->opts.state_dir, 0700) < 0 && errno != EEXIST) {
		rc = neg_errno();
		log_err("state directory %s: %s", t->opts.state_dir, err_str(rc));
		return rc;
	}
	snprintf(path, sizeof(path), "%s/tapctld.lock", t->opts.state_dir);
	t->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (t->lock_fd < 0) {
		rc = neg_errno();
		log_err("%s: %s", path, err_str(rc));
		return rc;
	}
	if (flock(t->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		rc = neg_errno();
		if (rc == -EWOULDBLOCK)
			log_err("another tapctld is running with state directory %s",
				t->opts.state_dir);
		else
			log_err("%s: flock: %s", path, err_str(rc));
		close(t->lock_fd);
		t->lock_fd = -1;
		return rc == -EWOULDBLOCK ? -EBUSY : rc;
	}
	return 0;
}

int tcd_ctl_path(struct tcd *t, pid_t pid, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s/tapdisk-%d.sock", t->opts.state_dir, (int)pid);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static void record_path(struct tcd *t, pid_t pid, char *buf, size_t size)
{
	snprintf(buf, size, "%s/tapdisk-%d.json", t->opts.state_dir, (int)pid);
}

int tcd_state_save(struct tcd_disk *d)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	json_t *rec;
	int rc = 0;

	record_path(d->tcd, d->pid, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	rec = json_pack("{s:i, s:I, s:i, s:s, s:s, s:s}", "pid", (int)d->pid, "start_ticks",
			(json_int_t)d->start_ticks, "minor", d->minor, "state",
			tcd_state_name(d->state), "spec", d->spec, "ctl", d->ctl_path);
	if (!rec)
		return -ENOMEM;
	if (d->open_args)
		json_object_set(rec, "args", d->open_args);
	if (d->xen_ring)
		json_object_set_new(rec, "xen_ring", json_integer((json_int_t)d->xen_ring));
	if (json_dump_file(rec, tmp, JSON_INDENT(2) | JSON_PRESERVE_ORDER) < 0 ||
	    rename(tmp, path) < 0) {
		rc = -EIO;
		log_err("cannot write the state record %s: %m", path);
		unlink(tmp);
	}
	json_decref(rec);
	return rc;
}

void tcd_state_forget(struct tcd_disk *d)
{
	char path[PATH_MAX];

	record_path(d->tcd, d->pid, path, sizeof(path));
	unlink(path);
}

static int parse_state(const char *s, enum tcd_state *out)
{
	static const enum tcd_state all[] = { TCD_SPAWNED, TCD_ATTACHED, TCD_RUNNING, TCD_PAUSED };
	unsigned i;

	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (strcmp(s, tcd_state_name(all[i])) == 0) {
			*out = all[i];
			return 0;
		}
	}
	return -EINVAL;
}

/* A record's fields into @d; -EINVAL (with @why) for a malformed one. */
static int parse_record(struct tcd *t, json_t *rec, struct tcd_disk *d, char *why, size_t size)
{
	const char *state, *spec;
	int64_t pid, minor, ticks;
	char ctl[TCD_SOCK_BYTES];

	if (ctlp_get_int(rec, "pid", 1, INT32_MAX, &pid, why, size) < 0 ||
	    ctlp_get_int(rec, "minor", -1, TCD_MAX_MINORS - 1, &minor, why, size) < 0 ||
	    ctlp_get_int(rec, "start_ticks", 0, INT64_MAX, &ticks, why, size) < 0 ||
	    ctlp_get_str(rec, "state", &state, why, size) < 0 ||
	    ctlp_get_str(rec, "spec", &spec, why, size) < 0)
		return -EINVAL;
	if (parse_state(state, &d->state) < 0 || (minor < 0) != (d->state == TCD_SPAWNED)) {
		snprintf(why, size, "state '%s' with minor %lld", state, (long long)minor);
		return -EINVAL;
	}
	d->pid = (pid_t)pid;
	d->minor = (int)minor;
	d->start_ticks = (uint64_t)ticks;
	snprintf(d->spec, sizeof(d->spec), "%s", spec);
	tcd_ctl_path(t, d->pid, ctl, sizeof(ctl));
	memcpy(d->ctl_path, ctl, sizeof(ctl));
	d->open_args = json_incref(json_object_get(rec, "args"));
	if (ctlp_get_int(rec, "xen_ring", 1, INT64_MAX, &ticks, why, size) == 0)
		d->xen_ring = (uint64_t)ticks;
	return 0;
}

/* Is the tapdisk of this record still there, and answering? */
static bool still_running(struct tcd_disk *d)
{
	if (d->start_ticks == 0 || tcd_proc_start_ticks(d->pid) != d->start_ticks)
		return false;
	if (tcd_proc_open(d) < 0)
		return false;
	return tdc_ping(d->ctl_path) == 0;
}

static void adopt_one(struct tcd *t, const char *name)
{
	char path[PATH_MAX], why[160] = "not JSON";
	struct tcd_disk *d = calloc(1, sizeof(*d));
	json_t *rec;

	if (!d)
		return;
	d->tcd = t;
	d->pidfd = -1;
	snprintf(path, sizeof(path), "%s/%s", t->opts.state_dir, name);
	rec = json_load_file(path, JSON_REJECT_DUPLICATES, NULL);
	if (!rec || parse_record(t, rec, d, why, sizeof(why)) < 0) {
		log_err("state record %s is unusable (%s); removed", path, why);
		goto drop;
	}
	if (d->minor >= 0 && tcd_disk_by_minor(t, d->minor)) {
		log_err("state record %s claims minor %d, which another tapdisk has; removed", path,
			d->minor);
		goto drop;
	}
	if (!still_running(d)) {
		log_err("tapdisk %d serving minor %d (%s) died while tapctld was not running; "
			"minor %d released",
			(int)d->pid, d->minor, d->spec[0] ? d->spec : "no image", d->minor);
		tcd_record_death(d, "died while tapctld was not running");
		unlink(d->ctl_path);
		goto drop;
	}
	if (tcd_supervise(d) < 0)
		goto drop;
	d->next = t->disks;
	t->disks = d;
	json_decref(rec);
	log_info("re-adopted tapdisk %d: minor %d, %s, %s", (int)d->pid, d->minor,
		 tcd_state_name(d->state), d->spec[0] ? d->spec : "no image");
	return;
drop:
	unlink(path);
	json_decref(rec);
	tcd_disk_free(d);
}

void tcd_state_adopt(struct tcd *t)
{
	struct dirent *e;
	DIR *dir = opendir(t->opts.state_dir);
	size_t n;

	if (!dir)
		return;
	while ((e = readdir(dir))) {
		n = strlen(e->d_name);
		if (strncmp(e->d_name, "tapdisk-", 8) == 0 && n > 5 &&
		    strcmp(e->d_name + n - 5, ".json") == 0)
			adopt_one(t, e->d_name);
	}
	closedir(dir);
}
