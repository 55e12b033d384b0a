// SPDX-License-Identifier: MIT
/*
 * The write recorder (aio-rec.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aio-rec.h"
#include "aio.h"
#include "errors.h"
#include "log.h"

struct aio_rec {
	pthread_mutex_t lock;
	FILE *log;
	char *log_path;
	char *files[AIO_REC_MAX_FILES];
	unsigned nr_files;
	uint64_t next_id;
	bool sized; /* the G_SIZE record is out */
	int err;    /* first failure to write the log */
};

struct aio_rec *aio_rec_active;

static int aio_rec_new_mode(const char *log_path, const char *mode, struct aio_rec **out)
{
	struct aio_rec *r = calloc(1, sizeof(*r));

	*out = NULL;
	if (!r)
		return -ENOMEM;
	r->log_path = strdup(log_path);
	r->log = fopen(log_path, mode);
	if (!r->log_path || !r->log) {
		int err = r->log_path ? neg_errno() : -ENOMEM;

		log_err("record: open %s: %s", log_path, err_str(err));
		free(r->log_path);
		free(r);
		return err;
	}
	pthread_mutex_init(&r->lock, NULL);
	r->next_id = 1;
	*out = r;
	return 0;
}

static void rec_put(struct aio_rec *r, const void *p, size_t n)
{
	if (n && fwrite(p, 1, n, r->log) != n && !r->err)
		r->err = -EIO;
}

static void rec_hdr(struct aio_rec *r, const struct aio_rec_hdr *h)
{
	rec_put(r, h, sizeof(*h));
}

/* The START record: which process the records after it come from. */
static void rec_start(struct aio_rec *r)
{
	const char *name = program_invocation_short_name;

	rec_hdr(r, &(struct aio_rec_hdr){ .magic = AIO_REC_MAGIC,
					  .type = AIO_REC_START,
					  .data_len = strlen(name) });
	rec_put(r, name, strlen(name));
}

int aio_rec_new(const char *log_path, struct aio_rec **out)
{
	int err = aio_rec_new_mode(log_path, "wbe", out);

	if (!err)
		rec_start(*out);
	return err;
}

/* Read the files @r's log names and its last id: the log is open "rb". */
static int rec_resume(struct aio_rec *r, FILE *in)
{
	struct aio_rec_hdr h;

	while (fread(&h, sizeof(h), 1, in) == 1) {
		if (h.magic != AIO_REC_MAGIC)
			return -EINVAL;
		if (h.id >= r->next_id)
			r->next_id = h.id + 1;
		if (h.type == AIO_REC_FILE) {
			char *path = h.data_len < PATH_MAX ? calloc(1, h.data_len + 1) : NULL;

			if (!path || h.file != r->nr_files || r->nr_files == AIO_REC_MAX_FILES ||
			    fread(path, 1, h.data_len, in) != h.data_len) {
				free(path);
				return path ? -EINVAL : -ENOMEM;
			}
			r->files[r->nr_files++] = path;
		} else if (h.data_len && fseeko(in, (off_t)h.data_len, SEEK_CUR) != 0) {
			return -EINVAL;
		}
	}
	return ferror(in) ? -EIO : 0;
}

int aio_rec_append(const char *log_path, struct aio_rec **out)
{
	FILE *in = fopen(log_path, "rbe");
	struct aio_rec *r;
	int err;

	if (!in) {
		err = neg_errno();
		log_err("record: open %s: %s", log_path, err_str(err));
		return err;
	}
	err = aio_rec_new_mode(log_path, "abe", &r);
	if (!err)
		err = rec_resume(r, in);
	fclose(in);
	if (err && r) {
		log_err("record: %s: not a log to add to: %s", log_path, err_str(err));
		aio_rec_free(r);
		return err;
	}
	if (!err) {
		rec_start(r);
		*out = r;
	}
	return err;
}

int aio_rec_start_env(struct aio_rec **out)
{
	const char *log = getenv("QTAP_RECORD");
	int err;

	*out = NULL;
	if (!log || !*log)
		return 0;
	err = log[0] == '+' ? aio_rec_append(log + 1, out) : aio_rec_new(log, out);
	if (!err)
		aio_rec_install(*out);
	return err;
}

int aio_rec_free(struct aio_rec *r)
{
	int err;

	if (!r)
		return 0;
	if (aio_rec_active == r)
		aio_rec_install(NULL);
	err = r->err;
	if (fclose(r->log) != 0 && !err)
		err = neg_errno();
	if (err)
		log_err("record: write %s: %s", r->log_path, err_str(err));
	for (unsigned i = 0; i < r->nr_files; i++)
		free(r->files[i]);
	pthread_mutex_destroy(&r->lock);
	free(r->log_path);
	free(r);
	return err;
}

void aio_rec_install(struct aio_rec *r)
{
	__atomic_store_n(&aio_rec_active, r, __ATOMIC_RELEASE);
}

/* Copy @src to @dst keeping holes: the replay's starting state. */
static int rec_copy_sparse(const char *src, const char *dst)
{
	int in = open(src, O_RDONLY | O_CLOEXEC), out = -1, err = 0;
	char *buf = malloc(1 << 20);
	off_t data = 0, hole, size;

	if (in < 0 || !buf)
		goto fail;
	out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	size = lseek(in, 0, SEEK_END);
	if (out < 0 || size < 0 || ftruncate(out, size) < 0)
		goto fail;
	while (data < size && (data = lseek(in, data, SEEK_DATA)) >= 0) {
		hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0)
			goto fail;
		while (data < hole) {
			size_t n = (size_t)(hole - data < (1 << 20) ? hole - data : (1 << 20));
			ssize_t got = pread(in, buf, n, data);

			if (got <= 0 || pwrite(out, buf, (size_t)got, data) != got)
				goto fail;
			data += got;
		}
	}
	if (data < 0 && errno != ENXIO)
		goto fail;
	goto out;
fail:
	err = errno ? -errno : -EIO;
out:
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	free(buf);
	return err;
}

/* The number naming @path in the log: named (and copied) on first sight. */
static unsigned rec_file(struct aio_rec *r, const char *path)
{
	char copy[PATH_MAX];
	unsigned i;
	int err;

	for (i = 0; i < r->nr_files; i++)
		if (strcmp(r->files[i], path) == 0)
			return i;
	if (i == AIO_REC_MAX_FILES || !(r->files[i] = strdup(path))) {
		r->err = r->err ? r->err : -ENOMEM;
		return AIO_REC_MAX_FILES;
	}
	r->nr_files++;
	snprintf(copy, sizeof(copy), "%s.%u", r->log_path, i);
	err = rec_copy_sparse(path, copy);
	if (err) {
		log_err("record: copy %s to %s: %s", path, copy, err_str(err));
		r->err = r->err ? r->err : err;
	}
	rec_hdr(r, &(struct aio_rec_hdr){ .magic = AIO_REC_MAGIC,
					  .type = AIO_REC_FILE,
					  .file = (uint16_t)i,
					  .data_len = strlen(path) });
	rec_put(r, path, strlen(path));
	return i;
}

static void rec_iov(struct aio_rec *r, const struct iovec *iov, unsigned iovcnt, uint64_t len)
{
	for (unsigned i = 0; i < iovcnt && len; i++) {
		size_t n = iov[i].iov_len < len ? iov[i].iov_len : (size_t)len;

		rec_put(r, iov[i].iov_base, n);
		len -= n;
	}
}

uint64_t aio_rec_file_issue(const struct aio_file *f, int type, uint64_t offset, uint64_t len,
			    const struct iovec *iov, unsigned iovcnt)
{
	struct aio_rec *r = __atomic_load_n(&aio_rec_active, __ATOMIC_ACQUIRE);
	struct aio_rec_hdr h = { .magic = AIO_REC_MAGIC, .type = (uint16_t)type, .offset = offset };
	uint64_t id;

	if (!r)
		return 0;
	pthread_mutex_lock(&r->lock);
	id = r->next_id++;
	h.file = (uint16_t)rec_file(r, f->path);
	h.id = id;
	if (type != AIO_REC_FSYNC)
		h.len = len;
	if (type == AIO_REC_WRITE)
		h.data_len = len;
	rec_hdr(r, &h);
	if (type == AIO_REC_WRITE)
		rec_iov(r, iov, iovcnt, len);
	pthread_mutex_unlock(&r->lock);
	return id;
}

void aio_rec_file_done(uint64_t id, int err)
{
	struct aio_rec *r = __atomic_load_n(&aio_rec_active, __ATOMIC_ACQUIRE);

	if (!r || !id)
		return;
	pthread_mutex_lock(&r->lock);
	rec_hdr(r, &(struct aio_rec_hdr){
			   .magic = AIO_REC_MAGIC, .type = AIO_REC_DONE, .id = id, .err = err });
	pthread_mutex_unlock(&r->lock);
}

uint64_t aio_rec_guest(struct aio_rec *r, int type, unsigned flags, uint64_t offset, uint64_t len,
		       const struct iovec *iov, unsigned iovcnt)
{
	struct aio_rec_hdr h = { .magic = AIO_REC_MAGIC,
				 .type = (uint16_t)type,
				 .offset = offset,
				 .len = len,
				 .flags = flags };

	pthread_mutex_lock(&r->lock);
	h.id = r->next_id++;
	if (type == AIO_REC_G_WRITE)
		h.data_len = len;
	rec_hdr(r, &h);
	if (type == AIO_REC_G_WRITE)
		rec_iov(r, iov, iovcnt, len);
	pthread_mutex_unlock(&r->lock);
	return h.id;
}

void aio_rec_guest_size(struct aio_rec *r, uint64_t size_bytes, uint64_t cluster_bytes)
{
	pthread_mutex_lock(&r->lock);
	if (!r->sized) {
		r->sized = true;
		rec_hdr(r, &(struct aio_rec_hdr){ .magic = AIO_REC_MAGIC,
						  .type = AIO_REC_G_SIZE,
						  .offset = cluster_bytes,
						  .len = size_bytes });
	}
	pthread_mutex_unlock(&r->lock);
}

void aio_rec_guest_done(struct aio_rec *r, uint64_t id, int err)
{
	pthread_mutex_lock(&r->lock);
	rec_hdr(r, &(struct aio_rec_hdr){
			   .magic = AIO_REC_MAGIC, .type = AIO_REC_G_DONE, .id = id, .err = err });
	pthread_mutex_unlock(&r->lock);
}
