/* SPDX-License-Identifier: MIT */
/*
 * tap-img info [-f FMT] [--output=human|json] [--backing-chain] [-U] FILE
 *
 * What `qemu-img info` prints, field for field, in both its layouts.  Like
 * qemu-img, info looks at one file at a time without opening its backing
 * file (a missing or format-less backing file is reported, not an error);
 * --backing-chain then follows the backing file names.  Without -f the
 * format is probed: info only reads, and qemu-img info probes too.  The
 * images themselves are read by the drivers' info helpers (qcow2/info.h);
 * this file builds QEMU's ImageInfo from them and prints it.  FILE may
 * also be TYPE:PATH, as for the other verbs.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checked.h"
#include "cleanup.h"
#include "errors.h"
#include "imglock.h"
#include "info.h"
#include "json.h"
#include "qcow2/info.h"
#include "qjson.h"
#include "tap-img.h"

#define INFO_MAX_CHAIN 1024 /* qemu-img has no limit but its loop check */
#define INFO_SECTOR_BYTES 512u

struct info_cmd {
	const char *fmt;
	const char *filename;
	bool json;
	bool chain;
	bool force_share;
};

static void info_usage(FILE *f)
{
	fprintf(f,
		"Usage: tap-img info [-f FMT] [--output=human|json] [--backing-chain] [-U] FILE\n"
		"\n"
		"Print what qemu-img info prints about an image.\n"
		"  -f FMT             image format (default: probed, raw or qcow2)\n"
		"  --output=FMT       human (default) or json, qemu-img's layouts\n"
		"  --backing-chain    also every image of the backing chain\n"
		"  -U, --force-share  read an image another process is writing (no lock)\n");
}

static int info_parse_args(struct info_cmd *cmd, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "output", required_argument, NULL, 'O' },
		{ "backing-chain", no_argument, NULL, 'B' },
		{ "force-share", no_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "hf:U", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			info_usage(stdout);
			exit(IMG_EXIT_OK);
		case 'f':
			cmd->fmt = optarg;
			break;
		case 'O':
			if (strcmp(optarg, "json") != 0 && strcmp(optarg, "human") != 0) {
				img_err("info",
					"--output must be used with human or json as argument.");
				return -EINVAL;
			}
			cmd->json = strcmp(optarg, "json") == 0;
			break;
		case 'B':
			cmd->chain = true;
			break;
		case 'U':
			cmd->force_share = true;
			break;
		default:
			info_usage(stderr);
			return -EINVAL;
		}
	}
	if (optind != argc - 1) {
		img_err("info", "Expecting one image file name");
		return -EINVAL;
	}
	cmd->filename = argv[optind];
	return 0;
}

/* ---- one image ------------------------------------------------------------------- */

/* What is known of one image, before it becomes QEMU's ImageInfo. */
struct info_image {
	const char *filename;
	const char *format;
	struct stat st;
	uint64_t virtual_size;
	struct qcow2_info q; /* qcow2 only */
	char *full_backing;  /* qcow2 with a backing file */
};

/* Fill @fmt from the file's first bytes: qcow2, or raw. */
static int probe_format(const char *filename, const char **fmt)
{
	uint8_t buf[512];
	ssize_t n;
	int fd = open(filename, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return neg_errno();
	n = pread(fd, buf, sizeof(buf), 0);
	close(fd);
	if (n < 0)
		return neg_errno();
	*fmt = qcow2_info_probe(buf, (size_t)n) ? "qcow2" : "raw";
	return 0;
}

static bool has_qcow2_magic(const char *filename)
{
	uint8_t buf[4];
	int fd = open(filename, O_RDONLY | O_CLOEXEC);
	bool yes;

	if (fd < 0)
		return false;
	yes = pread(fd, buf, sizeof(buf), 0) == (ssize_t)sizeof(buf) &&
	      qcow2_get_be32(buf) == QCOW2_MAGIC;
	close(fd);
	return yes;
}

/* A raw image's size as QEMU's block layer reports it: whole sectors. */
static int raw_size(struct info_image *im)
{
	uint64_t bytes = (uint64_t)im->st.st_size;

	if (S_ISBLK(im->st.st_mode)) {
		int fd = open(im->filename, O_RDONLY | O_CLOEXEC);
		int err = 0;

		if (fd < 0 || ioctl(fd, BLKGETSIZE64, &bytes) < 0)
			err = neg_errno();
		if (fd >= 0)
			close(fd);
		if (err)
			return err;
	}
	if (ck_align_up_u64(bytes, INFO_SECTOR_BYTES, &im->virtual_size))
		return -EFBIG;
	return 0;
}

static int info_read_image(const char *filename, const char *fmt, bool force_share,
			   struct info_image *im)
{
	CLEANUP_CLOSE int lock_fd = -1;
	const char *probed = NULL;
	int err;

	memset(im, 0, sizeof(*im));
	im->filename = filename;
	err = stat(filename, &im->st) < 0 ? neg_errno() : probe_format(filename, &probed);
	if (err) {
		img_err("info", "Could not open '%s': Could not open '%s': %s", filename, filename,
			err_str(err));
		return err;
	}
	/* a qcow2 magic with a header the probe refuses: the parse says what is wrong */
	if (fmt && strcmp(fmt, "qcow2") == 0 && strcmp(probed, "qcow2") != 0 &&
	    !has_qcow2_magic(filename)) {
		img_err("info", "Could not open '%s': Image is not in qcow2 format", filename);
		return -EINVAL;
	}
	fmt = fmt ? fmt : probed;
	/* qemu-img info takes no permission; on qcow2 it shares no write (unless -U) */
	if (!force_share && strcmp(fmt, "qcow2") == 0 &&
	    img_lock("info", filename, filename, 0, IMGLOCK_SHARED_RO, &lock_fd))
		return -EBUSY;
	im->format = fmt;
	if (strcmp(fmt, "raw") == 0)
		err = raw_size(im);
	else if (strcmp(fmt, "qcow2") == 0)
		err = qcow2_info_read(filename, &im->q);
	else
		err = -ENOENT;
	if (err == -ENOENT) {
		img_err("info", "Could not open '%s': Unknown driver '%s'", filename, fmt);
		return err;
	}
	if (err) {
		img_err("info", "Could not open '%s': %s", filename, err_str(err));
		return err;
	}
	if (strcmp(fmt, "qcow2") == 0) {
		im->virtual_size = im->q.hdr.size_bytes;
		if (im->q.hdr.has_backing_file) {
			im->full_backing = img_backing_name(filename, im->q.hdr.backing_file);
			if (!im->full_backing)
				return -ENOMEM;
		}
	}
	return 0;
}

static void info_image_fini(struct info_image *im)
{
	qcow2_info_fini(&im->q);
	free(im->full_backing);
}

/* ---- QEMU's ImageInfo, keys in schema order ------------------------------------------ */

/* json_obj_set for the many fields below; the first failure sticks in *@err. */
static void put(json_t *obj, const char *key, json_t *v, int *err)
{
	if (!*err)
		*err = json_obj_set(obj, key, v);
	else
		json_decref(v);
}

static json_t *snapshot_json(const struct qcow2_snapshot *sn)
{
	json_t *o = json_object();
	int err = o ? 0 : -ENOMEM;

	put(o, "id", json_string(sn->id), &err);
	put(o, "name", json_string(sn->name), &err);
	put(o, "vm-state-size", json_integer((json_int_t)sn->vm_state_bytes), &err);
	put(o, "date-sec", json_integer(sn->date_sec), &err);
	put(o, "date-nsec", json_integer(sn->date_nsec), &err);
	put(o, "vm-clock-sec", json_integer((json_int_t)(sn->vm_clock_nsec / 1000000000u)), &err);
	put(o, "vm-clock-nsec", json_integer((json_int_t)(sn->vm_clock_nsec % 1000000000u)), &err);
	if (sn->icount != -1)
		put(o, "icount", json_integer(sn->icount), &err);
	if (err) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *snapshots_json(const struct info_image *im)
{
	json_t *a = json_array();
	unsigned i;

	for (i = 0; a && i < im->q.hdr.nb_snapshots; i++) {
		if (json_array_append_new(a, snapshot_json(&im->q.snapshots[i])) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static json_t *bitmap_json(const struct qcow2_bitmap *bm)
{
	json_t *o = json_object(), *flags = json_array();
	int err = o && flags ? 0 : -ENOMEM;

	if (!err && (bm->flags & QCOW2_BME_IN_USE))
		err = json_array_append_new(flags, json_string("in-use")) < 0 ? -ENOMEM : 0;
	if (!err && (bm->flags & QCOW2_BME_AUTO))
		err = json_array_append_new(flags, json_string("auto")) < 0 ? -ENOMEM : 0;
	put(o, "name", json_string(bm->name), &err);
	put(o, "granularity", json_integer((json_int_t)1 << bm->granularity_bits), &err);
	put(o, "flags", flags, &err);
	if (err) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *bitmaps_json(const struct qcow2_info *q)
{
	json_t *a = json_array();
	unsigned i;

	for (i = 0; a && i < q->nb_bitmaps; i++) {
		if (json_array_append_new(a, bitmap_json(&q->bitmaps[i])) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

/* ImageInfoSpecificQCow2, as qcow2_get_specific_info() fills it. */
static json_t *qcow2_specific_json(const char *path, const struct qcow2_info *q)
{
	const struct qcow2_header *h = &q->hdr;
	bool v3 = h->version >= 3;
	json_t *data = json_object(), *spec = json_object();
	int err = data && spec ? 0 : -ENOMEM;

	put(data, "compat", json_string(v3 ? "1.1" : "0.10"), &err);
	if (v3 && h->data_file)
		put(data, "data-file", json_string(h->data_file), &err);
	if (v3 && (h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE))
		put(data, "data-file-raw",
		    json_boolean(h->autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW), &err);
	if (v3) {
		put(data, "extended-l2",
		    json_boolean(h->incompatible_features & QCOW2_INCOMPAT_EXTL2), &err);
		put(data, "lazy-refcounts",
		    json_boolean(h->compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS), &err);
		put(data, "corrupt",
		    json_boolean(h->incompatible_features & QCOW2_INCOMPAT_CORRUPT), &err);
	}
	put(data, "refcount-bits", json_integer((json_int_t)1 << h->refcount_order), &err);
	if (!err && h->crypt_method != QCOW2_CRYPT_NONE) {
		json_t *enc = NULL;

		err = info_encrypt_json(path, h, &enc);
		if (!err && enc)
			put(data, "encrypt", enc, &err);
	}
	if (v3 && q->nb_bitmaps)
		put(data, "bitmaps", bitmaps_json(q), &err);
	put(data, "compression-type",
	    json_string(h->compression_type == QCOW2_COMPRESSION_ZSTD ? "zstd" : "zlib"), &err);
	put(spec, "type", json_string("qcow2"), &err);
	put(spec, "data", data, &err);
	if (err) {
		json_decref(spec);
		return NULL;
	}
	return spec;
}

/*
 * Bytes the image file occupies on disk.  QEMU 7.2 counts the image file
 * alone, not an external data file.
 */
static json_int_t actual_size(const struct info_image *im)
{
	return (json_int_t)im->st.st_blocks * 512;
}

static void put_backing(json_t *o, const struct info_image *im, int *err)
{
	const struct qcow2_header *h = &im->q.hdr;

	if (!h->has_backing_file)
		return;
	put(o, "backing-filename", json_string(h->backing_file), err);
	put(o, "full-backing-filename", json_string(im->full_backing), err);
	if (h->has_backing_format)
		put(o, "backing-filename-format", json_string(h->backing_format), err);
}

/* QEMU's ImageInfo for one image (bdrv_query_image_info()). */
static json_t *image_json(const struct info_image *im)
{
	bool qcow2 = strcmp(im->format, "qcow2") == 0;
	const struct qcow2_header *h = &im->q.hdr;
	json_t *o = json_object();
	int err = o ? 0 : -ENOMEM;

	put(o, "filename", json_string(im->filename), &err);
	put(o, "format", json_string(im->format), &err);
	put(o, "dirty-flag",
	    json_boolean(qcow2 && (h->incompatible_features & QCOW2_INCOMPAT_DIRTY)), &err);
	put(o, "actual-size", json_integer(actual_size(im)), &err);
	put(o, "virtual-size", json_integer((json_int_t)im->virtual_size), &err);
	if (qcow2) {
		put(o, "cluster-size", json_integer((json_int_t)1 << h->cluster_bits), &err);
		if (h->crypt_method != QCOW2_CRYPT_NONE)
			put(o, "encrypted", json_true(), &err);
		put_backing(o, im, &err);
		if (h->nb_snapshots)
			put(o, "snapshots", snapshots_json(im), &err);
		put(o, "format-specific", qcow2_specific_json(im->filename, &im->q), &err);
	}
	if (err) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* ---- human output ----------------------------------------------------------------- */

/* qemu's size_to_str(): three significant digits and a binary prefix. */
static void size_str(char *buf, size_t len, uint64_t val)
{
	static const char *const prefixes[] = { "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei" };
	double x = (double)val / (1000.0 / 1024.0);
	unsigned e = 0, i;

	/* e is frexp()'s exponent: halvings until below 1 */
	while (x >= 1.0) {
		x /= 2;
		e++;
	}
	i = e ? (e - 1) / 10 : 0;
	snprintf(buf, len, "%0.3g %sB", (double)val / (double)(UINT64_C(1) << (i * 10)),
		 prefixes[i]);
}

static json_int_t get_int(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

static const char *get_str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static void print_snapshot_line(const json_t *sn)
{
	json_int_t clock_s = get_int(sn, "vm-clock-sec");
	json_int_t clock_ms = get_int(sn, "vm-clock-nsec") / 1000000;
	time_t t = (time_t)get_int(sn, "date-sec");
	char date[64] = "", vm_size[32], clock[64], icount[32] = "";
	struct tm tm;

	if (localtime_r(&t, &tm))
		strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(clock, sizeof(clock), "%02d:%02d:%02d.%03d", (int)(clock_s / 3600),
		 (int)((clock_s / 60) % 60), (int)(clock_s % 60), (int)clock_ms);
	size_str(vm_size, sizeof(vm_size), (uint64_t)get_int(sn, "vm-state-size"));
	if (json_object_get(sn, "icount"))
		snprintf(icount, sizeof(icount), "%" JSON_INTEGER_FORMAT, get_int(sn, "icount"));
	printf("%-9s %-16s %8s%20s%13s%11s\n", get_str(sn, "id"), get_str(sn, "name"), vm_size,
	       date, clock, icount);
}

static void print_backing_human(const json_t *o)
{
	const char *name = get_str(o, "backing-filename");
	const char *full = get_str(o, "full-backing-filename");

	if (!name)
		return;
	printf("backing file: %s", name);
	if (!full)
		printf(" (cannot determine actual path)");
	else if (strcmp(name, full) != 0)
		printf(" (actual path: %s)", full);
	putchar('\n');
	if (get_str(o, "backing-filename-format"))
		printf("backing file format: %s\n", get_str(o, "backing-filename-format"));
}

/* bdrv_image_info_dump(), from the ImageInfo object. */
static void print_human(const json_t *o)
{
	char vsize[32], dsize[32] = "unavailable";
	const json_t *snaps = json_object_get(o, "snapshots");
	size_t i;

	size_str(vsize, sizeof(vsize), (uint64_t)get_int(o, "virtual-size"));
	if (json_object_get(o, "actual-size"))
		size_str(dsize, sizeof(dsize), (uint64_t)get_int(o, "actual-size"));
	printf("image: %s\nfile format: %s\nvirtual size: %s (%" JSON_INTEGER_FORMAT
	       " bytes)\ndisk size: %s\n",
	       get_str(o, "filename"), get_str(o, "format"), vsize, get_int(o, "virtual-size"),
	       dsize);
	if (json_is_true(json_object_get(o, "encrypted")))
		printf("encrypted: yes\n");
	if (json_object_get(o, "cluster-size"))
		printf("cluster_size: %" JSON_INTEGER_FORMAT "\n", get_int(o, "cluster-size"));
	if (json_is_true(json_object_get(o, "dirty-flag")))
		printf("cleanly shut down: no\n");
	print_backing_human(o);
	if (snaps) {
		printf("Snapshot list:\n%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE",
		       "DATE", "VM CLOCK", "ICOUNT");
		for (i = 0; i < json_array_size(snaps); i++)
			print_snapshot_line(json_array_get(snaps, i));
	}
	if (json_object_get(o, "format-specific")) {
		printf("Format specific information:\n");
		qjson_dump_human(stdout,
				 json_object_get(json_object_get(o, "format-specific"), "data"), 1);
	}
}

/* ---- the command ------------------------------------------------------------------ */

static bool chain_has(const json_t *list, const char *filename)
{
	size_t i;

	for (i = 0; i < json_array_size(list); i++) {
		if (strcmp(get_str(json_array_get(list, i), "filename"), filename) == 0)
			return true;
	}
	return false;
}

/*
 * Append @filename's ImageInfo to @list; with @chain, go on with its
 * backing file (by the name QEMU resolves, in the recorded format or
 * probed).  Stops at a name seen before, as qemu-img does.
 */
static int collect(json_t *list, const char *filename, const char *fmt, const struct info_cmd *cmd)
{
	CLEANUP_FREE char *next = NULL, *next_fmt = NULL;
	struct info_image im;
	json_t *o;
	int err;

	if (chain_has(list, filename)) {
		img_err("info", "Backing file '%s' creates an infinite loop.", filename);
		return -ELOOP;
	}
	if (json_array_size(list) >= INFO_MAX_CHAIN) {
		img_err("info", "%s: backing chain deeper than %d images", filename,
			INFO_MAX_CHAIN);
		return -ELOOP;
	}
	err = info_read_image(filename, fmt, cmd->force_share, &im);
	o = err ? NULL : image_json(&im);
	if (!err && (!o || json_array_append_new(list, o) < 0))
		err = -ENOMEM;
	if (!err && cmd->chain && im.full_backing) {
		next = strdup(im.full_backing);
		next_fmt = im.q.hdr.has_backing_format ? strdup(im.q.hdr.backing_format) : NULL;
		err = next ? 0 : -ENOMEM;
	}
	info_image_fini(&im);
	if (!err && next)
		err = collect(list, next, next_fmt, cmd);
	return err;
}

/*
 * "TYPE:PATH", as the other verbs take images, when no file has that name
 * and TYPE is a driver: the format is TYPE's (an alias names its driver).
 */
static void split_spec(struct info_cmd *cmd)
{
	const char *colon = strchr(cmd->filename, ':');
	const struct drv_ops *ops;
	char type[32];
	struct stat st;

	if (cmd->fmt || !colon || colon == cmd->filename || stat(cmd->filename, &st) == 0 ||
	    (size_t)(colon - cmd->filename) >= sizeof(type))
		return;
	snprintf(type, sizeof(type), "%.*s", (int)(colon - cmd->filename), cmd->filename);
	ops = drv_find(type);
	if (!ops || !colon[1])
		return;
	cmd->fmt = ops->name;
	cmd->filename = colon + 1;
}

int img_cmd_info(int argc, char **argv)
{
	struct info_cmd cmd = { 0 };
	json_t *list;
	size_t i;
	int err;

	if (info_parse_args(&cmd, argc, argv))
		return IMG_EXIT_ERR;
	split_spec(&cmd);
	list = json_array();
	if (!list)
		return IMG_EXIT_ERR;
	err = collect(list, cmd.filename, cmd.fmt, &cmd);
	if (!err && cmd.json) {
		qjson_print(stdout, cmd.chain ? list : json_array_get(list, 0));
	} else if (!err) {
		for (i = 0; i < json_array_size(list); i++) {
			if (i)
				putchar('\n');
			print_human(json_array_get(list, i));
		}
	}
	json_decref(list);
	return err ? IMG_EXIT_ERR : IMG_EXIT_OK;
}

void img_snapshot_list_print(const struct qcow2_snapshot *sns, unsigned nb)
{
	unsigned i;

	printf("Snapshot list:\n%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE",
	       "VM CLOCK", "ICOUNT");
	for (i = 0; i < nb; i++) {
		json_t *o = snapshot_json(&sns[i]);

		if (o)
			print_snapshot_line(o);
		json_decref(o);
	}
}
