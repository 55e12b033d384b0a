// SPDX-License-Identifier: MIT
/*
 * Changing the backing file name of a qcow2 image offline (backing-edit.h).
 */
#include <errno.h>
#include <stdlib.h>

#include "aio.h"
#include "driver.h"
#include "errors.h"
#include "log.h"
#include "qcow2/backing-edit.h"
#include "qcow2/format.h"
#include "qcow2/info.h"
#include "qcow2/sync-io.h"

static int rewrite(struct aio_file *f, const char *path, struct qcow2_header *h, const char *name,
		   const char *format)
{
	uint64_t cb = 1ull << h->cluster_bits;
	uint8_t *buf;
	int err;

	if (h->autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW) {
		log_err("qcow2 %s: Cannot change the backing file of an image whose data file is "
			"raw",
			path);
		return -ENOTSUP;
	}
	err = qcow2_header_set_backing(h, name && *name ? name : NULL, format);
	if (err) {
		log_err("qcow2 %s: backing file name or format too long", path);
		return err;
	}
	buf = calloc(1, cb);
	if (!buf)
		return -ENOMEM;
	err = qcow2_header_serialise(h, buf, cb, NULL);
	if (err)
		log_err("qcow2 %s: the header with the new backing file does not fit in cluster "
			"0: %s",
			path, err_str(err));
	if (!err)
		err = qcow2_pwrite(f, 0, buf, cb);
	if (!err)
		err = qcow2_fsync(f);
	free(buf);
	return err;
}

int qcow2_backing_change(const char *path, const char *name, const char *format)
{
	struct qcow2_header h = { 0 };
	struct aio_file *f = NULL;
	int err;

	err = aio_file_open(path, AIO_FILE_BUFFERED, &f);
	if (!err)
		err = drv_image_lock(f->fd, path, 0);
	if (!err)
		err = qcow2_info_read_header(f, path, &h);
	if (!err)
		err = rewrite(f, path, &h, name, format);
	qcow2_header_fini(&h);
	aio_file_close(f);
	return err;
}
