/* SPDX-License-Identifier: MIT */
/*
 * QEMU-compatible image locks (see imglock.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>

#include "errors.h"
#include "imglock.h"
#include "log.h"

#define IMGLOCK_PERM_BASE 100	 /* QEMU's RAW_LOCK_PERM_BASE */
#define IMGLOCK_NOSHARE_BASE 200 /* QEMU's RAW_LOCK_SHARED_BASE */
#define IMGLOCK_NR_PERMS 4	 /* BLK_PERM_MAX in QEMU 7.2 */

static const char *const imglock_names[IMGLOCK_NR_PERMS] = {
	"consistent read",
	"write",
	"write unchanged",
	"resize",
};

const char *imglock_perm_name(unsigned bit)
{
	unsigned i;

	for (i = 0; i < IMGLOCK_NR_PERMS; i++) {
		if (bit == 1u << i)
			return imglock_names[i];
	}
	return "unknown";
}

static int set_byte(int fd, short type, off_t byte)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };

	return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? neg_errno() : 0;
}

/* Does another open file description hold a lock on @byte?  1, 0 or -errno. */
static int byte_taken(int fd, off_t byte)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };

	if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
		return neg_errno();
	return fl.l_type != F_UNLCK;
}

void imglock_drop(int fd)
{
	unsigned i;

	for (i = 0; i < IMGLOCK_NR_PERMS; i++) {
		set_byte(fd, F_UNLCK, IMGLOCK_PERM_BASE + i);
		set_byte(fd, F_UNLCK, IMGLOCK_NOSHARE_BASE + i);
	}
}

/* Hold exactly the bytes of @perm and of what @shared leaves out. */
static int apply(int fd, unsigned perm, unsigned shared)
{
	unsigned i;
	int err;

	for (i = 0; i < IMGLOCK_NR_PERMS; i++) {
		err = set_byte(fd, (perm & (1u << i)) ? F_RDLCK : F_UNLCK, IMGLOCK_PERM_BASE + i);
		if (err)
			return err;
	}
	for (i = 0; i < IMGLOCK_NR_PERMS; i++) {
		err = set_byte(fd, (shared & (1u << i)) ? F_UNLCK : F_RDLCK,
			       IMGLOCK_NOSHARE_BASE + i);
		if (err)
			return err;
	}
	return 0;
}

int imglock_conflict(int fd, unsigned perm, unsigned shared, bool *shared_lock)
{
	unsigned i;
	int r;

	/* QEMU's order, so the permission named is the one qemu-img would name */
	for (i = 0; i < IMGLOCK_NR_PERMS; i++) {
		if (!(perm & (1u << i)))
			continue;
		r = byte_taken(fd, IMGLOCK_NOSHARE_BASE + i);
		if (r) {
			*shared_lock = false;
			return r < 0 ? r : (int)(1u << i);
		}
	}
	for (i = 0; i < IMGLOCK_NR_PERMS; i++) {
		if (shared & (1u << i))
			continue;
		r = byte_taken(fd, IMGLOCK_PERM_BASE + i);
		if (r) {
			*shared_lock = true;
			return r < 0 ? r : (int)(1u << i);
		}
	}
	return 0;
}

int imglock_try(int fd, const char *path, unsigned perm, unsigned shared,
		struct imglock_refusal *why)
{
	int r = apply(fd, perm, shared);

	if (r == -ENOLCK || r == -EOPNOTSUPP || r == -EINVAL) {
		/* as QEMU's locking=auto: a file system without OFD locks is used unlocked */
		log_warn("lock %s: the file system cannot lock it (%s): used without locks", path,
			 err_str(r));
		imglock_drop(fd);
		return 0;
	}
	if (r) {
		log_err("lock %s: %s", path, err_str(r));
		imglock_drop(fd);
		return r;
	}
	r = imglock_conflict(fd, perm, shared, &why->shared);
	if (r == 0)
		return 0;
	imglock_drop(fd);
	if (r < 0) {
		log_err("lock %s: testing the locks of others: %s", path, err_str(r));
		return r;
	}
	why->perm = (unsigned)r;
	return -EBUSY;
}

int imglock_take(int fd, const char *path, unsigned perm, unsigned shared)
{
	struct imglock_refusal why;
	int r = imglock_try(fd, path, perm, shared, &why);

	if (r == -EBUSY)
		log_err("open %s: Failed to get %s\"%s\" lock: is another process using the image?",
			path, why.shared ? "shared " : "", imglock_perm_name(why.perm));
	return r;
}
