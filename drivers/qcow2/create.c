// SPDX-License-Identifier: MIT
/*
 * qcow2 create (create.h): options, qemu-img's checks and messages, and
 * the sequence of qemu-img's qcow2_co_create() over the layout replay in
 * create-alloc.c.
 *
 * Unlike qemu-img, every option is checked before the file is opened:
 * qemu-img truncates the file first and deletes it when an option turns
 * out to be invalid, which destroys whatever was there.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aio.h"
#include "checked.h"
#include "errors.h"
#include "log.h"
#include "optval.h"
#include "qcow2/create-alloc.h"
#include "qcow2/create.h"
#include "qcow2/format.h"
#include "qcow2/sync-io.h"

#define CREATE_DEFAULT_CLUSTER_BITS 16u
#define CREATE_SECTOR_BYTES 512u

/* clang-format off */
const struct drv_opt_desc qcow2_create_opts[] = {
	{ "cluster_size",     DRV_OPT_SIZE,   "qcow2 cluster size", "65536" },
	{ "extended_l2",      DRV_OPT_BOOL,   "Extended L2 tables", "off" },
	{ "preallocation",    DRV_OPT_STRING,
	  "Preallocation mode (allowed values: off, metadata, falloc, full)", NULL },
	{ "compression_type", DRV_OPT_STRING,
	  "Compression method used for image cluster compression", "zlib" },
	{ "size",             DRV_OPT_SIZE,   "Virtual disk size", NULL },
	{ "compat",           DRV_OPT_STRING, "Compatibility level (v2 [0.10] or v3 [1.1])", NULL },
	{ "backing_file",     DRV_OPT_STRING, "File name of a base image", NULL },
	{ "backing_fmt",      DRV_OPT_STRING, "Image format of the base image", NULL },
	{ "lazy_refcounts",   DRV_OPT_BOOL,   "Postpone refcount updates", "off" },
	{ "refcount_bits",    DRV_OPT_NUMBER, "Width of a reference count entry in bits", "16" },
	{ NULL,               DRV_OPT_STRING, NULL, NULL },
};
/* clang-format on */

/* The values of the options that were given (NULL: default). */
struct create_vals {
	const char *cluster_size;
	const char *compat;
	const char *preallocation;
	const char *lazy_refcounts;
	const char *refcount_bits;
	const char *extended_l2;
	const char *compression_type;
};

/* What the options ask for, once checked. */
struct create_params {
	unsigned version;
	uint64_t cluster_bytes;
	unsigned cluster_bits;
	bool extended_l2;
	enum qcow2_mk_prealloc prealloc;
	bool lazy_refcounts;
	uint64_t refcount_bits;
	unsigned refcount_order;
	unsigned compression_type;
	uint64_t size_bytes; /* rounded up to 512 */
	const char *backing_file;
	const char *backing_format;
};

/* Where each option's value goes; the last one given wins, as in qemu-img. */
static int collect_opts(const char *path, const struct drv_create_args *args, struct create_vals *v)
{
	static const struct {
		const char *key;
		size_t off;
	} keys[] = {
		{ "cluster_size", offsetof(struct create_vals, cluster_size) },
		{ "compat", offsetof(struct create_vals, compat) },
		{ "preallocation", offsetof(struct create_vals, preallocation) },
		{ "lazy_refcounts", offsetof(struct create_vals, lazy_refcounts) },
		{ "refcount_bits", offsetof(struct create_vals, refcount_bits) },
		{ "extended_l2", offsetof(struct create_vals, extended_l2) },
		{ "compression_type", offsetof(struct create_vals, compression_type) },
	};
	unsigned i, k;

	memset(v, 0, sizeof(*v));
	for (i = 0; i < args->nr_opts; i++) {
		struct drv_opt *opt = &args->opts[i];

		for (k = 0; k < ARRAY_SIZE(keys); k++) {
			if (strcmp(opt->key, keys[k].key) == 0)
				break;
		}
		if (k == ARRAY_SIZE(keys)) {
			log_err("create %s: Invalid parameter '%s'", path, opt->key);
			return -EINVAL;
		}
		*(const char **)((char *)v + keys[k].off) = opt->value;
		opt->used = true;
	}
	return 0;
}

/* An enumerated value: its index in @names, or -EINVAL logged as qemu-img does. */
static int pick(const char *path, const char *param, const char *value, const char *const *names,
		unsigned nr, unsigned *out)
{
	unsigned i;

	for (i = 0; i < nr; i++) {
		if (strcmp(value, names[i]) == 0) {
			*out = i;
			return 0;
		}
	}
	log_err("create %s: Parameter '%s' does not accept value '%s'", path, param, value);
	return -EINVAL;
}

/* A typed value the tool has checked already; refused the same way if not. */
static int typed(const char *path, const char *key, const char *value, enum drv_opt_type type,
		 uint64_t *num, bool *flag)
{
	int err;

	if (type == DRV_OPT_BOOL)
		err = optval_bool(value, flag);
	else if (type == DRV_OPT_SIZE)
		err = optval_size(value, num);
	else
		err = optval_number(value, num);
	if (err)
		log_err("create %s: Parameter '%s' expects %s", path, key,
			type == DRV_OPT_BOOL ? "'on' or 'off'" : "a number");
	return err;
}

/* The values qemu-img parses before it looks at combinations. */
static int parse_vals(const char *path, const struct create_vals *v, struct create_params *p)
{
	static const char *const versions[] = { "0.10", "v2", "1.1", "v3" };
	static const char *const preallocs[] = { "off", "metadata", "falloc", "full" };
	static const char *const compressions[] = { "zlib", "zstd" };
	unsigned i = 0;
	int err = 0;

	if (v->compat)
		err = pick(path, "version", v->compat, versions, ARRAY_SIZE(versions), &i);
	if (err)
		return err;
	p->version = v->compat && i < 2 ? 2 : 3;
	if (v->preallocation)
		err = pick(path, "preallocation", v->preallocation, preallocs,
			   ARRAY_SIZE(preallocs), &i);
	if (err)
		return err;
	p->prealloc = v->preallocation ? (enum qcow2_mk_prealloc)i : QCOW2_MK_PREALLOC_OFF;
	if (v->compression_type)
		err = pick(path, "compression-type", v->compression_type, compressions,
			   ARRAY_SIZE(compressions), &p->compression_type);
	if (!err && v->cluster_size)
		err = typed(path, "cluster_size", v->cluster_size, DRV_OPT_SIZE, &p->cluster_bytes,
			    NULL);
	if (!err && v->refcount_bits)
		err = typed(path, "refcount_bits", v->refcount_bits, DRV_OPT_NUMBER,
			    &p->refcount_bits, NULL);
	if (!err && v->lazy_refcounts)
		err = typed(path, "lazy_refcounts", v->lazy_refcounts, DRV_OPT_BOOL, NULL,
			    &p->lazy_refcounts);
	if (!err && v->extended_l2)
		err = typed(path, "extended_l2", v->extended_l2, DRV_OPT_BOOL, NULL,
			    &p->extended_l2);
	return err;
}

#define NEEDS_V3 "compatibility level 1.1 and above (use version=v3 or greater)"

static int check_cluster_size(const char *path, const struct create_params *p)
{
	uint64_t min = UINT64_C(1) << QCOW2_MIN_CLUSTER_BITS;
	uint64_t max = UINT64_C(1) << QCOW2_MAX_CLUSTER_BITS;

	if (!is_power_of_2_u64(p->cluster_bytes) || p->cluster_bytes < min ||
	    p->cluster_bytes > max) {
		log_err("create %s: Cluster size must be a power of two between %" PRIu64
			" and %" PRIu64 "k",
			path, min, max >> 10);
		return -EINVAL;
	}
	if (p->extended_l2 && p->cluster_bytes < (UINT64_C(1) << QCOW2_EXTL2_MIN_CLUSTER_BITS)) {
		log_err("create %s: Extended L2 entries are only supported with cluster sizes of "
			"at least %u bytes",
			path, 1u << QCOW2_EXTL2_MIN_CLUSTER_BITS);
		return -EINVAL;
	}
	return 0;
}

/* The combinations qemu-img refuses, in its order, with its words. */
static int check_combinations(const char *path, const struct create_params *p)
{
	const char *why = NULL;

	if (p->extended_l2 && p->version < 3) {
		why = "Extended L2 entries are only supported with " NEEDS_V3;
	} else if (check_cluster_size(path, p)) {
		return -EINVAL;
	} else if (p->backing_file && p->prealloc != QCOW2_MK_PREALLOC_OFF && !p->extended_l2) {
		why = "Backing file and preallocation can only be used at the same time if "
		      "extended_l2 is on";
	} else if (p->backing_format && !p->backing_file) {
		why = "Backing format cannot be used without backing file";
	} else if (p->lazy_refcounts && p->version < 3) {
		why = "Lazy refcounts only supported with " NEEDS_V3;
	} else if (p->refcount_bits > 64 || !is_power_of_2_u64(p->refcount_bits)) {
		why = "Refcount width must be a power of two and may not exceed 64 bits";
	} else if (p->version < 3 && p->refcount_bits != 16) {
		why = "Different refcount widths than 16 bits require compatibility level 1.1 or "
		      "above (use version=v3 or greater)";
	} else if (p->version < 3 && p->compression_type != QCOW2_COMPRESSION_DEFLATE) {
		why = "Non-zlib compression type is only supported with " NEEDS_V3;
	} else if (p->backing_format &&
		   strlen(p->backing_format) > QCOW2_MAX_BACKING_FORMAT_BYTES) {
		log_err("create %s: Parameter 'backing-fmt' does not accept value '%s'", path,
			p->backing_format);
		return -EINVAL;
	} else if (p->backing_file && strlen(p->backing_file) > QCOW2_MAX_BACKING_NAME_BYTES) {
		why = "Backing file name too long";
	}
	if (why) {
		log_err("create %s: %s", path, why);
		return -EINVAL;
	}
	return 0;
}

static int make_params(const char *path, const struct drv_create_args *args,
		       struct create_params *p)
{
	struct create_vals v;
	int err;

	memset(p, 0, sizeof(*p));
	p->cluster_bytes = UINT64_C(1) << CREATE_DEFAULT_CLUSTER_BITS;
	p->refcount_bits = 16;
	p->backing_file = args->backing_file;
	p->backing_format = args->backing_format;
	err = collect_opts(path, args, &v);
	if (!err)
		err = parse_vals(path, &v, p);
	if (!err)
		err = check_combinations(path, p);
	if (err)
		return err;
	p->cluster_bits = (unsigned)__builtin_ctzll(p->cluster_bytes);
	p->refcount_order = (unsigned)__builtin_ctzll(p->refcount_bits);
	if (ck_align_up_u64(args->size_bytes, CREATE_SECTOR_BYTES, &p->size_bytes) ||
	    qcow2_size_to_l1(p->cluster_bits, p->extended_l2, p->size_bytes) >
		    QCOW2_MAX_L1_BYTES / 8) {
		log_err("create %s: The image size is too large for file format 'qcow2' "
			"(try using a larger cluster size)",
			path);
		return -EFBIG;
	}
	return 0;
}

int qcow2_create_parse(const char *path, const struct drv_create_args *args,
		       struct qcow2_create_geom *out)
{
	struct create_params p;
	struct create_vals v;
	int err;

	memset(&p, 0, sizeof(p));
	p.cluster_bytes = UINT64_C(1) << CREATE_DEFAULT_CLUSTER_BITS;
	p.refcount_bits = 16;
	p.backing_file = args->backing_file;
	err = collect_opts(path, args, &v);
	if (!err)
		err = parse_vals(path, &v, &p);
	/* qemu-img measure checks the cluster size, not the other combinations */
	if (!err)
		err = check_cluster_size(path, &p);
	if (!err && (p.refcount_bits > 64 || !is_power_of_2_u64(p.refcount_bits) ||
		     (p.version < 3 && p.refcount_bits != 16))) {
		log_err("%s: Refcount width must be a power of two and may not exceed 64 bits "
			"(16 with compatibility level 0.10)",
			path);
		err = -EINVAL;
	}
	if (err)
		return err;
	*out = (struct qcow2_create_geom){
		.version = p.version,
		.cluster_bytes = p.cluster_bytes,
		.refcount_order = (unsigned)__builtin_ctzll(p.refcount_bits),
		.extended_l2 = p.extended_l2,
		.prealloc_data = p.prealloc == QCOW2_MK_PREALLOC_FALLOC ||
				 p.prealloc == QCOW2_MK_PREALLOC_FULL,
		.has_backing = p.backing_file != NULL,
	};
	return 0;
}

/* ---- writing ----------------------------------------------------------------------- */

/* The header as qemu-img leaves it, from the laid-out tables. */
static int build_header(const struct create_params *p, const struct qcow2_mk *mk,
			struct qcow2_header *h)
{
	int err;

	memset(h, 0, sizeof(*h));
	h->version = p->version;
	h->cluster_bits = p->cluster_bits;
	h->size_bytes = p->size_bytes;
	h->l1_size = (uint32_t)mk->l1_entries;
	h->l1_table_offset = mk->l1_offset;
	h->refcount_table_offset = mk->reftable_offset;
	h->refcount_table_clusters = (uint32_t)((mk->reftable_entries * 8) >> p->cluster_bits);
	h->refcount_order = p->version < 3 ? QCOW2_V2_REFCOUNT_ORDER : p->refcount_order;
	h->header_length = p->version < 3 ? QCOW2_V2_HEADER_BYTES : QCOW2_V3_HEADER_BYTES;
	h->compression_type = (uint8_t)p->compression_type;
	if (p->compression_type != QCOW2_COMPRESSION_DEFLATE)
		h->incompatible_features |= QCOW2_INCOMPAT_COMPRESSION;
	if (p->extended_l2)
		h->incompatible_features |= QCOW2_INCOMPAT_EXTL2;
	if (p->lazy_refcounts)
		h->compatible_features |= QCOW2_COMPAT_LAZY_REFCOUNTS;
	err = qcow2_header_set_default_feature_table(h);
	if (!err)
		err = qcow2_header_set_backing(h, p->backing_file, p->backing_format);
	return err;
}

static int write_header(const char *path, const struct create_params *p, const struct qcow2_mk *mk,
			struct aio_file *file)
{
	struct qcow2_header h;
	uint8_t *buf = calloc(1, mk->cluster_bytes);
	int err = buf ? build_header(p, mk, &h) : -ENOMEM;

	if (!err) {
		err = qcow2_header_serialise(&h, buf, mk->cluster_bytes, NULL);
		if (err)
			log_err("create %s: Could not assign backing file '%s' with format '%s': "
				"%s",
				path, p->backing_file ? p->backing_file : "",
				p->backing_format ? p->backing_format : "", err_str(err));
	}
	if (!err)
		err = qcow2_header_validate(&h, path, 0);
	if (!err) {
		err = qcow2_pwrite(file, 0, buf, mk->cluster_bytes);
		if (err)
			log_err("create %s: write of the header: %s", path, err_str(err));
	}
	qcow2_header_fini(&h);
	free(buf);
	return err;
}

/* qemu-img's steps on the truncated file. */
static int lay_out(const char *path, const struct create_params *p, struct aio_file *file)
{
	struct qcow2_mk mk;
	uint64_t off;
	int err;

	if (file->is_blockdev && p->prealloc >= QCOW2_MK_PREALLOC_FALLOC) {
		log_err("create %s: preallocation=%s needs a regular file", path,
			p->prealloc == QCOW2_MK_PREALLOC_FALLOC ? "falloc" : "full");
		return -ENOTSUP;
	}
	err = qcow2_mk_init(&mk, file, path, p->cluster_bits, p->refcount_order, p->extended_l2);
	if (!err)
		err = qcow2_mk_alloc(&mk, 3 * mk.cluster_bytes, &off);
	if (!err && off != 0) {
		log_err("create %s: the header clusters were not allocated first", path);
		err = -EIO;
	}
	if (!err)
		err = qcow2_mk_grow_l1(
			&mk, qcow2_size_to_l1(p->cluster_bits, p->extended_l2, p->size_bytes));
	if (!err)
		err = qcow2_mk_preallocate(&mk, p->size_bytes, p->prealloc);
	if (!err)
		err = write_header(path, p, &mk, file);
	if (!err)
		err = qcow2_mk_finish(&mk);
	qcow2_mk_fini(&mk);
	return err;
}

/*
 * Create or truncate @path, as qemu-img's file layer does.  A block device
 * is written over as it is (the image's bytes land at its start).
 */
static int open_truncated(const char *path, struct aio_file **file)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	struct stat st;
	int err;

	if (fd < 0 || fstat(fd, &st) < 0 || (!S_ISBLK(st.st_mode) && ftruncate(fd, 0) < 0)) {
		err = neg_errno();
		log_err("create %s: Could not create '%s': %s", path, path, err_str(err));
		if (fd >= 0)
			close(fd);
		return err;
	}
	return aio_file_from_fd(fd, path, file);
}

int qcow2_create(const char *path, const struct drv_create_args *args)
{
	struct create_params p;
	struct aio_file *file;
	int err;

	err = make_params(path, args, &p);
	if (err)
		return err;
	err = open_truncated(path, &file);
	if (err)
		return err;
	err = lay_out(path, &p, file);
	/* half an image is worth nothing; qemu-img removes it too */
	if (err && !file->is_blockdev)
		unlink(path);
	aio_file_close(file);
	log_dbg(LOG_F_QCOW2, "create %s: v%u, cluster %" PRIu64 ", %" PRIu64 " bytes: %s", path,
		p.version, p.cluster_bytes, p.size_bytes, err_str(err));
	return err;
}
