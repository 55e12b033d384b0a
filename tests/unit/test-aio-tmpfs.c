// SPDX-License-Identifier: MIT
/*
 * O_DIRECT refused (tmpfs): aio_file_open() must warn, naming the file, fall
 * back to buffered I/O (direct false, no alignment) and still serve correct
 * data on every engine, including WRITE_ZEROES, which tmpfs cannot do
 * natively (FALLOC_FL_ZERO_RANGE: EOPNOTSUPP) and which is then written.
 *
 * tmpfs accepts O_DIRECT since Linux 6.6.  There this test makes open64()
 * refuse O_DIRECT under /dev/shm the way older kernels did (create the file,
 * then EINVAL), by defining open64 in this binary ahead of libc's; it says
 * which of the two it is testing.
 */
#include <stdarg.h>
#include <sys/syscall.h>
#include <sys/vfs.h>

#include "aio-harness.h"
#include "log.h"

#define SHM_DIR "/dev/shm"
#define TMPFS_MAGIC 0x01021994

static bool emulate_refusal;
static enum aio_engine cur_engine;

int open64(const char *path, int flags, ...);

int open64(const char *path, int flags, ...)
{
	mode_t mode = 0;
	long fd;

	if (flags & (O_CREAT | __O_TMPFILE)) {
		va_list ap;

		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	if (emulate_refusal && (flags & O_DIRECT) &&
	    strncmp(path, SHM_DIR "/", strlen(SHM_DIR "/")) == 0) {
		fd = syscall(SYS_openat, AT_FDCWD, path, flags & ~O_DIRECT, mode);
		if (fd < 0)
			return -1;
		close((int)fd);
		errno = EINVAL;
		return -1;
	}
	return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}

/* Why this cannot run, or NULL; decides emulate_refusal on the way. */
static const char *probe_shm(void)
{
	char path[PATH_MAX];
	struct statfs sfs;
	long fd;

	if (statfs(SHM_DIR, &sfs) < 0 || sfs.f_type != TMPFS_MAGIC)
		return SHM_DIR " is not a tmpfs mount";
	snprintf(path, sizeof(path), SHM_DIR "/qtap-test-aio-probe-%d", (int)getpid());
	fd = syscall(SYS_openat, AT_FDCWD, path, O_RDWR | O_CREAT | O_EXCL | O_DIRECT, 0600);
	unlink(path);
	if (fd < 0 && errno == EINVAL) {
		print_message("tmpfs refuses O_DIRECT on this kernel: testing the real refusal\n");
		return NULL;
	}
	if (fd < 0)
		return "cannot create files in " SHM_DIR;
	close((int)fd);
	emulate_refusal = true;
	print_message("tmpfs takes O_DIRECT on this kernel (Linux >= 6.6): emulating the "
		      "refusal of older kernels\n");
	return NULL;
}

/* aio_file_open() with fd 2 captured into @log (NUL-terminated). */
static int open_capturing_stderr(const char *path, unsigned flags, struct aio_file **out, char *log,
				 size_t size)
{
	FILE *tmp = tmpfile();
	int saved = dup(STDERR_FILENO), r;
	ssize_t n;

	assert_non_null(tmp);
	assert_true(saved >= 0);
	assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
	r = aio_file_open(path, flags, out);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	n = pread(fileno(tmp), log, size - 1, 0);
	assert_true(n >= 0);
	log[n] = '\0';
	fclose(tmp);
	return r;
}

static int setup(void **state)
{
	*state = h_new(cur_engine);
	return 0;
}

static int teardown(void **state)
{
	h_free(*state);
	return 0;
}

static void test_odirect_refused(void **state)
{
	struct harness *h = *state;
	struct tio v = { 0 };
	const char *why;
	char log[4096];
	uint8_t *a, *b, *c;

	H_SKIP_IF_UNAVAILABLE(h);
	why = probe_shm();
	if (why) {
		print_message("SKIP: %s\n", why);
		skip();
	}
	snprintf(h->path, sizeof(h->path), SHM_DIR "/qtap-test-aio-%d-%s", (int)getpid(),
		 aio_engine_name(cur_engine));
	assert_int_equal(open_capturing_stderr(h->path, AIO_FILE_CREATE | AIO_FILE_EXCL, &h->file,
					       log, sizeof(log)),
			 0);
	assert_false(h->file->direct);
	assert_int_equal(h->file->mem_align, 1);
	assert_int_equal(h->file->io_align, 1);
	assert_non_null(strstr(log, "warning"));
	assert_non_null(strstr(log, h->path));
	assert_non_null(strstr(log, "O_DIRECT"));
	h->vfd = open(h->path, O_RDWR | O_CLOEXEC);
	assert_true(h->vfd >= 0);

	/* Misaligned, vectored data, read back byte for byte. */
	h_fill(h, 64 << 10, 1);
	a = h_alloc(h, 1000, 1);
	b = h_alloc(h, 3333, 3);
	h_pattern(a, 1000, 2);
	h_pattern(b, 3333, 3);
	set_iov(&v, 0, a, 1000);
	set_iov(&v, 1, b, 3333);
	h_req(h, &v, AIO_OP_WRITE, 777, 2);
	assert_int_equal(h_run(h, &v), 0);
	memcpy(h->ref + 777, a, 1000);
	memcpy(h->ref + 1777, b, 3333);
	h_check_file(h, 64 << 10);
	check_read(h, 700, 5000, 5);
	assert_int_equal(h_range_op(h, AIO_OP_FSYNC, 0, 0), 0);

	/* Past end of file, with and without zero fill. */
	c = h_alloc(h, 2000, 1);
	assert_int_equal(h_rw(h, AIO_OP_READ, (64 << 10) - 500, c, 2000, 0), -EIO);
	assert_int_equal(h_rw(h, AIO_OP_READ, (64 << 10) - 500, c, 2000, AIO_F_ZERO_EOF), 0);
	assert_memory_equal(c, h->ref + (64 << 10) - 500, 500);
	assert_zero(c + 500, 1500);

	check_zeroing(h, AIO_OP_WRITE_ZEROES, 4);
	check_zeroing(h, AIO_OP_DISCARD, 5);
}

int main(void)
{
	static const enum aio_engine engines[] = {
		AIO_ENGINE_URING,
		AIO_ENGINE_LIBAIO,
		AIO_ENGINE_SYNC,
	};
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_odirect_refused, setup, teardown),
	};
	int failed = 0;

	log_init("test-aio-tmpfs");
	for (size_t i = 0; i < ARRAY_SIZE(engines); i++) {
		cur_engine = engines[i];
		print_message("[ ENGINE   ] %s\n", aio_engine_name(cur_engine));
		failed +=
			cmocka_run_group_tests_name(aio_engine_name(cur_engine), tests, NULL, NULL);
	}
	return failed ? 1 : 0;
}
