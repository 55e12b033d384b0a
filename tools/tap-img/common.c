/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the tap-img verbs: error messages, sizes, cache modes
 * and opening an image the way every verb does.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "errors.h"
#include "imglock.h"
#include "qcow2/info.h"
#include "tap-img.h"

void img_err(const char *verb, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "tap-img: %s: ", verb);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int img_parse_size(const char *verb, const char *what, const char *s, uint64_t *out)
{
	int err = parse_u64(s, true, out);

	if (err)
		img_err(verb, "invalid %s '%s'%s", what, s, err == -ERANGE ? ": too large" : "");
	return err;
}

int img_parse_cache(const char *verb, const char *mode, unsigned *open_flags)
{
	/* the mode replaces the default */
	*open_flags &= ~(DRV_OPEN_BUFFERED | DRV_OPEN_UNSAFE | DRV_OPEN_DIRECT_IF_COLD);
	if (strcmp(mode, "none") == 0 || strcmp(mode, "directsync") == 0)
		return 0;
	if (strcmp(mode, "writeback") == 0 || strcmp(mode, "writethrough") == 0) {
		*open_flags |= DRV_OPEN_BUFFERED;
		return 0;
	}
	if (strcmp(mode, "unsafe") == 0) {
		*open_flags |= DRV_OPEN_BUFFERED | DRV_OPEN_UNSAFE;
		return 0;
	}
	img_err(verb, "invalid cache mode '%s' (none, directsync, writeback, writethrough, unsafe)",
		mode);
	return -EINVAL;
}

/* The driver @filename names when it is a TYPE:PATH spec, else NULL. */
static const struct drv_ops *spec_driver(const char *filename)
{
	const char *colon = strchr(filename, ':');
	char type[32];
	size_t len;

	if (!colon)
		return NULL;
	len = (size_t)(colon - filename);
	if (len == 0 || len >= sizeof(type))
		return NULL;
	memcpy(type, filename, len);
	type[len] = '\0';
	return drv_find(type);
}

static bool is_spec(const char *filename)
{
	return spec_driver(filename) != NULL;
}

const char *img_probe(const char *filename)
{
	uint8_t buf[512];
	ssize_t n;
	int fd = open(filename, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return "raw";
	n = pread(fd, buf, sizeof(buf), 0);
	close(fd);
	return n > 0 && qcow2_info_probe(buf, (size_t)n) ? "qcow2" : "raw";
}

const char *img_spec_split(const char *filename, const char **path)
{
	*path = filename;
	if (!is_spec(filename))
		return NULL;
	*path = strchr(filename, ':') + 1;
	return spec_driver(filename)->name;
}

int img_open_probed(const char *verb, const char *fmt, const char *filename, unsigned flags,
		    struct drv_image **out)
{
	if (!fmt && !is_spec(filename) && !img_is_nbd_uri(filename))
		fmt = img_probe(filename);
	return img_open(verb, fmt, filename, flags, out);
}

bool img_is_nbd_uri(const char *filename)
{
	return strncmp(filename, "nbd://", 6) == 0 || strncmp(filename, "nbd+unix://", 11) == 0 ||
	       strncmp(filename, "nbds://", 7) == 0 || strncmp(filename, "nbds+unix://", 12) == 0 ||
	       strncmp(filename, "nbd+vsock://", 12) == 0;
}

int img_open(const char *verb, const char *fmt, const char *filename, unsigned flags,
	     struct drv_image **out)
{
	CLEANUP_FREE char *spec = NULL;
	int err;

	if (fmt && !drv_find(fmt)) {
		img_err(verb, "unknown format '%s'", fmt);
		return -EINVAL;
	}
	/* an NBD URI: the raw bytes of the export, as qemu-img -f raw nbd://... reads them */
	if (img_is_nbd_uri(filename)) {
		if (fmt && strcmp(fmt, "raw") != 0 && strcmp(fmt, "nbd") != 0) {
			img_err(verb,
				"%s: only raw exports can be read over NBD, not %s (export "
				"the image with its format: qemu-nbd -f %s)",
				filename, fmt, fmt);
			return -ENOTSUP;
		}
		fmt = "nbd";
	}
	if (!fmt && is_spec(filename)) {
		spec = strdup(filename);
	} else if (asprintf(&spec, "%s:%s", fmt ? fmt : "raw", filename) < 0) {
		spec = NULL;
	}
	if (!spec) {
		img_err(verb, "out of memory");
		return -ENOMEM;
	}
	err = drv_chain_open(spec, flags, out);
	if (err)
		img_err(verb, "could not open '%s': %s", filename, err_str(err));
	return err;
}

/* The "driver=" and "file.filename=" of --image-opts; the rest stays in @opts for the driver. */
static int image_opts_take(struct drv_opt *opts, unsigned *nr, const char **fmt, const char **path)
{
	unsigned i, n = 0;

	for (i = 0; i < *nr; i++) {
		if (strcmp(opts[i].key, "driver") == 0)
			*fmt = opts[i].value;
		else if (strcmp(opts[i].key, "file.filename") == 0 ||
			 strcmp(opts[i].key, "file") == 0)
			*path = opts[i].value;
		else
			opts[n++] = opts[i];
	}
	*nr = n;
	return *fmt && *path ? 0 : -EINVAL;
}

int img_open_image_opts(const char *verb, const char *optstr, unsigned flags,
			struct drv_image **out)
{
	CLEANUP_FREE char *spec = NULL;
	struct drv_opt *opts = NULL;
	const char *fmt = NULL, *path = NULL;
	unsigned nr = 0;
	int err = drv_opts_parse(optstr, &opts, &nr);

	if (!err && image_opts_take(opts, &nr, &fmt, &path)) {
		img_err(verb, "--image-opts '%s': needs driver=FMT and file.filename=PATH", optstr);
		err = -EINVAL;
	} else if (!err && !drv_find(fmt)) {
		img_err(verb, "unknown format '%s'", fmt);
		err = -EINVAL;
	} else if (!err && asprintf(&spec, "%s:%s", fmt, path) < 0) {
		spec = NULL;
		err = -ENOMEM;
	}
	if (!err) {
		err = drv_chain_open_opts(spec, flags, opts, nr, out);
		if (err)
			img_err(verb, "could not open '%s': %s", path, err_str(err));
	}
	free(opts);
	return err;
}

int img_lock(const char *verb, const char *filename, const char *path, unsigned perm,
	     unsigned shared, int *fd)
{
	struct imglock_refusal why;
	int err;

	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0)
		return 0;
	err = imglock_try(*fd, path, perm, shared, &why);
	if (err == -EBUSY) {
		img_err(verb, "Could not open '%s': Failed to get %s\"%s\" lock", filename,
			why.shared ? "shared " : "", imglock_perm_name(why.perm));
		fprintf(stderr, "Is another process using the image [%s]?\n", filename);
	}
	if (err) {
		close(*fd);
		*fd = -1;
	}
	return err;
}

char *img_backing_name(const char *filename, const char *backing)
{
	const char *slash = strrchr(filename, '/');
	char *s;

	if (backing[0] == '/' || strstr(backing, "://") || strncmp(backing, "json:", 5) == 0)
		return strdup(backing);
	if (asprintf(&s, "%.*s%s", slash ? (int)(slash - filename + 1) : 0, filename, backing) < 0)
		return NULL;
	return s;
}
