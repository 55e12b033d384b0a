/* SPDX-License-Identifier: MIT */
/*
 * tapctld's disks: the life of one disk, from an empty tapdisk to an
 * attached minor, an open image, paused and resumed, closed and detached
 * (see tapctld.h; the process itself is supervise.c's).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errors.h"
#include "log.h"
#include "tapctld.h"
#include "tdclient.h"

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

void tcd_disk_unlink(struct tcd_disk *d)
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
	tcd_unsupervise(d);
	if (d->pidfd >= 0)
		close(d->pidfd);
	json_decref(d->open_args);
	free(d);
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
	if (rc == -EBUSY && !strstr(err, "lock")) {
		/* What EBUSY from an image's open means (the drivers' QEMU locks). */
		size_t n = strlen(err);

		snprintf(err + n, size - n,
			 " (the image is locked: another process, such as "
			 "QEMU or qemu-nbd, is using it)");
	}
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
	tcd_xen_disk_gone(d->tcd, d->minor, "its image was closed");
	rc = tdc_call(d->ctl_path, "close", NULL, d->tcd->opts.tapdisk_timeout_s, NULL, err, size);
	if (rc < 0)
		return rc;
	log_info("minor %d: %s closed", d->minor, d->spec);
	d->spec[0] = '\0';
	d->xen_ring = 0; /* close detaches every frontend */
	d->xen_ring = 0; /* close detaches every frontend */
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

int tcd_detach(struct tcd_disk *d, char *err, size_t size)
{
	if (d->state == TCD_RUNNING || d->state == TCD_PAUSED) {
		snprintf(err, size, "minor %d still has %s open: close it first", d->minor,
			 d->spec);
		return -EBUSY;
	}
	tcd_proc_stop(d);
	log_info("tapdisk %d (minor %d) stopped", (int)d->pid, d->minor);
	tcd_state_forget(d);
	unlink(d->ctl_path);
	tcd_disk_unlink(d);
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
