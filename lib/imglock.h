/* SPDX-License-Identifier: MIT */
/*
 * Image locks, the way QEMU takes them (block/file-posix.c), so that QEMU's
 * tools and qtap see each other's use of an image file.
 *
 * A process that uses an image holds, on its open file description, a
 * shared OFD lock (F_OFD_SETLK, F_RDLCK) on byte 100 + i for every
 * permission i it has taken, and on byte 200 + i for every permission it
 * does not let others take.  Permissions are QEMU's BLK_PERM_* bits:
 * 0 consistent read, 1 write, 2 write unchanged, 3 resize.  Taking them
 * conflicts when another open file description holds byte 200 + i for a
 * permission i we take ("Failed to get "write" lock"), or byte 100 + i for
 * a permission i we do not share ("Failed to get shared "write" lock").
 * Locks are taken first and tested after, as QEMU does, so two processes
 * racing for the same image cannot both win.
 *
 * OFD locks belong to the open file description: they are released when
 * its last descriptor is closed (a paused tapdisk closes its chain, and
 * qemu-img may then change the image), and a second open of the same file
 * in one process conflicts with the first as another process would.
 */
#ifndef QTAP_IMGLOCK_H
#define QTAP_IMGLOCK_H

#include <stdbool.h>

#define IMGLOCK_READ (1u << 0) /* consistent read */
#define IMGLOCK_WRITE (1u << 1)
#define IMGLOCK_WRITE_UNCHANGED (1u << 2)
#define IMGLOCK_RESIZE (1u << 3)
#define IMGLOCK_ALL (IMGLOCK_READ | IMGLOCK_WRITE | IMGLOCK_WRITE_UNCHANGED | IMGLOCK_RESIZE)

/* What QEMU takes for an image opened read-write: nobody else may write or resize. */
#define IMGLOCK_PERM_RW (IMGLOCK_READ | IMGLOCK_WRITE | IMGLOCK_RESIZE)
#define IMGLOCK_SHARED_RW (IMGLOCK_READ | IMGLOCK_WRITE_UNCHANGED)
/* ... read-only, as the image a tool reads (qemu-img map, convert's source) */
#define IMGLOCK_PERM_RO IMGLOCK_READ
#define IMGLOCK_SHARED_RO (IMGLOCK_READ | IMGLOCK_WRITE_UNCHANGED)
/* ... as a backing file, or read-only with --force-share: others may do anything */
#define IMGLOCK_PERM_SHARED IMGLOCK_READ
#define IMGLOCK_SHARED_SHARED IMGLOCK_ALL

/*
 * imglock_take - lock @fd's open file description for permissions @perm,
 * sharing @shared with others (IMGLOCK_* masks).  On a conflict the locks
 * taken are dropped again and -EBUSY is returned, logged in QEMU's words
 * with @path: 'Failed to get "write" lock' or 'Failed to get shared
 * "write" lock', and "Is another process using the image?".  Other
 * failures (a file system without OFD locks) are -errno, logged.
 * Calling it again replaces the previous set.
 */
int imglock_take(int fd, const char *path, unsigned perm, unsigned shared);

/*
 * imglock_try - imglock_take() for callers that report a refusal in their
 * own words: -EBUSY is not logged; *@why says which permission was refused.
 */
struct imglock_refusal {
	unsigned perm; /* one IMGLOCK_* bit */
	bool shared;   /* we would not share it (else: we want it and someone refuses) */
};
int imglock_try(int fd, const char *path, unsigned perm, unsigned shared,
		struct imglock_refusal *why);

/* imglock_drop - release every lock imglock_take() took on @fd. */
void imglock_drop(int fd);

/*
 * imglock_conflict - which of our wishes someone else's locks on @fd's file
 * refuse, without taking anything: 0 when none, else the first permission
 * (an IMGLOCK_* bit) and in *@shared_lock whether it is one we would not
 * share (someone holds it) rather than one we want (someone refuses it).
 * -errno when the locks cannot be read.
 */
int imglock_conflict(int fd, unsigned perm, unsigned shared, bool *shared_lock);

/* imglock_perm_name - QEMU's name of one permission bit ("write"). */
const char *imglock_perm_name(unsigned bit);

#endif
