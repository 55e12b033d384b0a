/* SPDX-License-Identifier: MIT */
/*
 * tap-img internals: the verbs main.c dispatches to, and the helpers they
 * share.  A verb takes its own argv (argv[0] is the verb's name), prints
 * its errors as "tap-img: VERB: message" on stderr and returns the process
 * exit code, qemu-img's: 0 on success, 1 on error.
 */
#ifndef QTAP_TAP_IMG_H
#define QTAP_TAP_IMG_H

#include <stdbool.h>
#include <stdint.h>

#include "driver.h"

#define IMG_EXIT_OK 0
#define IMG_EXIT_ERR 1

/* The verbs.  Each returns an exit code. */
int img_cmd_create(int argc, char **argv);
int img_cmd_convert(int argc, char **argv);
int img_cmd_info(int argc, char **argv);
int img_cmd_check(int argc, char **argv);
int img_cmd_io(int argc, char **argv);
int img_cmd_bench(int argc, char **argv);
int img_cmd_map(int argc, char **argv);
int img_cmd_compare(int argc, char **argv);
int img_cmd_bitmap(int argc, char **argv);
int img_cmd_measure(int argc, char **argv);
int img_cmd_snapshot(int argc, char **argv);
int img_cmd_commit(int argc, char **argv);
int img_cmd_rebase(int argc, char **argv);
int img_cmd_resize(int argc, char **argv);
int img_cmd_amend(int argc, char **argv);
int img_cmd_dd(int argc, char **argv);

/*
 * img_resize_qcow2 - make the qcow2 image at @path @size_bytes long (any
 * direction, no preallocation) as tap-img resize does, for amend's size
 * option.  Prints the error for @verb; 0 or -errno.
 */
int img_resize_qcow2(const char *verb, const char *path, uint64_t size_bytes);

/*
 * img_compat_name / img_compat_main - blktap's old tool names (qcow-create,
 * img2qcow, qcow2raw) with their old arguments (compat.c).
 */
bool img_compat_name(const char *prog);
int img_compat_main(const char *prog, int argc, char **argv);

/* img_err - print "tap-img: @verb: message" on stderr. */
void img_err(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * img_parse_size - a byte count with an optional k/M/G/T/P/E suffix (powers
 * of 1024, as qemu-img).  On error prints "invalid @what '@s'" for @verb and
 * returns -EINVAL/-ERANGE.
 */
int img_parse_size(const char *verb, const char *what, const char *s, uint64_t *out);

/*
 * img_parse_cache - qemu's cache modes, replacing the cache bits of
 * *@open_flags (a verb's default): "none"/"directsync" O_DIRECT,
 * "writeback"/"writethrough" DRV_OPEN_BUFFERED, "unsafe" also
 * DRV_OPEN_UNSAFE (flushes are ignored).
 * Prints the error for @verb; 0 or -EINVAL.
 */
int img_parse_cache(const char *verb, const char *mode, unsigned *open_flags);

/*
 * img_open - open @filename and its backing chain.  @fmt names the driver
 * when given; otherwise @filename may be a TYPE:PATH spec, and anything else
 * is opened as raw.  An NBD URI is opened with the nbd driver (with no
 * @fmt, or raw).  Raw is a safe default because nothing is probed: the
 * file's bytes are served as they are.  Prints the error for @verb; 0 or
 * -errno.  *@out is closed with drv_image_close().
 */
int img_open(const char *verb, const char *fmt, const char *filename, unsigned flags,
	     struct drv_image **out);

/*
 * img_open_image_opts - img_open() for --image-opts: @optstr is QEMU's
 * "driver=FMT,file.filename=PATH,KEY=VALUE,..."; the other keys are the
 * driver's open-time options (qcow2's l2-cache-size, ...), checked by the
 * driver layer, which names a key it refuses.  Prints the error for @verb;
 * 0 or -errno.
 */
int img_open_image_opts(const char *verb, const char *optstr, unsigned flags,
			struct drv_image **out);

/*
 * img_probe - the format of @filename as qemu-img's probe finds it among
 * ours: "qcow2" for a qcow2 header, else "raw" (also when it cannot be read:
 * the open that follows reports that).
 */
const char *img_probe(const char *filename);

/* img_is_nbd_uri - @filename is an NBD URI (nbd://, nbd+unix://, nbds://, ...). */
bool img_is_nbd_uri(const char *filename);

/*
 * img_spec_split - for a TYPE:PATH @filename naming a driver: the driver's
 * name, with *@path after the colon; else NULL and *@path = @filename.
 */
const char *img_spec_split(const char *filename, const char **path);

/*
 * img_open_probed - img_open() for the verbs that only read and that
 * qemu-img probes for (map, compare, measure): without @fmt or a TYPE:
 * prefix the format is img_probe()'s.  Never used to serve or write an
 * image, where probing is a hazard (a guest can write a qcow2 header into
 * a raw disk).
 */
int img_open_probed(const char *verb, const char *fmt, const char *filename, unsigned flags,
		    struct drv_image **out);

/*
 * img_backing_name - the name QEMU gives the backing file @backing of the
 * image @filename: an absolute name as is, a relative one after the
 * image's directory as @filename spells it (malloc'ed; NULL: no memory).
 */
char *img_backing_name(const char *filename, const char *backing);

/*
 * img_lock - lock the image file @path (named @filename to the user) as
 * qemu-img would for @verb: open it, take @perm sharing @shared
 * (lib/imglock.h) and keep the descriptor in *@fd (-1 when the file cannot
 * be opened: the verb's own open reports that).  A refusal is printed in
 * qemu-img's words ("Could not open 'F': Failed to get "write" lock") and
 * is -EBUSY.
 */
int img_lock(const char *verb, const char *filename, const char *path, unsigned perm,
	     unsigned shared, int *fd);

/*
 * img_snapshot_list_print - qemu-img's "Snapshot list:" table of @nb
 * snapshots, as info and snapshot -l print it (info.c).
 */
struct qcow2_snapshot;
void img_snapshot_list_print(const struct qcow2_snapshot *sns, unsigned nb);

#endif
