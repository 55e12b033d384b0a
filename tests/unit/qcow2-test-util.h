/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the qcow2 format unit tests: a per-process scratch directory,
 * running qemu-img/qemu-io without a shell, reading image bytes, and
 * capturing what the code under test logs.
 *
 * Included by each test-qcow2-*.c (the Makefile builds one binary per test
 * file, so shared helpers live here as static functions).
 */
#ifndef QTAP_QCOW2_TEST_UTIL_H
#define QTAP_QCOW2_TEST_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define QT_UNUSED __attribute__((unused))

extern char **environ;

static char qt_dir_path[PATH_MAX];

/* The scratch directory, made on first use under $QTAP_TEST_DIR. */
static QT_UNUSED const char *qt_dir(void)
{
	const char *base = getenv("QTAP_TEST_DIR");
	char tmpl[PATH_MAX];

	if (qt_dir_path[0])
		return qt_dir_path;
	if (!base || !*base)
		base = "build/tmp";
	mkdir("build", 0755);
	mkdir(base, 0755);
	snprintf(tmpl, sizeof(tmpl), "%s/qcow2fmt-XXXXXX", base);
	if (!mkdtemp(tmpl)) {
		perror("mkdtemp");
		abort();
	}
	/* absolute, so that backing file names work from any directory */
	if (!realpath(tmpl, qt_dir_path)) {
		perror("realpath");
		abort();
	}
	return qt_dir_path;
}

/* qt_path - "<scratch>/<name>" in a static ring of buffers. */
static QT_UNUSED const char *qt_path(const char *name)
{
	static char ring[8][PATH_MAX];
	static unsigned next;
	char *p = ring[next++ % 8];

	if (snprintf(p, PATH_MAX, "%s/%s", qt_dir(), name) >= PATH_MAX)
		abort();
	return p;
}

/* Everything readable from @fd, NUL-terminated, malloc'ed. */
static QT_UNUSED char *qt_slurp(int fd)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	ssize_t n;

	while (buf) {
		if (cap - len < 2) {
			char *bigger = realloc(buf, cap * 2);

			if (!bigger) {
				free(buf);
				return NULL;
			}
			buf = bigger;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	if (buf)
		buf[len] = '\0';
	return buf;
}

/*
 * Run argv (NULL-terminated, searched in PATH) with stdin from /dev/null;
 * stdout goes to *@out (malloc'ed, NUL-terminated) when @out is given,
 * else to /dev/null.  Returns the exit status, or -1.
 */
static QT_UNUSED int qt_runv(const char *const *argv, char **out)
{
	posix_spawn_file_actions_t fa;
	int pipefd[2] = { -1, -1 };
	char *buf = NULL;
	int status = -1;
	pid_t pid;

	if (out && pipe2(pipefd, O_CLOEXEC) < 0)
		return -1;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (out)
		posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
	else
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	if (posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ) != 0)
		pid = -1;
	posix_spawn_file_actions_destroy(&fa);
	if (out) {
		close(pipefd[1]);
		buf = qt_slurp(pipefd[0]);
		close(pipefd[0]);
		*out = buf;
	}
	if (pid > 0 && waitpid(pid, &status, 0) == pid)
		return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	return -1;
}

#define QT_MAX_ARGS 64

static QT_UNUSED int qt_run_va(char **out, const char *arg0, va_list ap)
{
	const char *argv[QT_MAX_ARGS + 1];
	unsigned n = 0;

	for (const char *a = arg0; a && n < QT_MAX_ARGS; a = va_arg(ap, const char *))
		argv[n++] = a;
	argv[n] = NULL;
	return qt_runv(argv, out);
}

/* qt_run("qemu-img", "create", ..., NULL) - exit status, output dropped. */
static QT_UNUSED __attribute__((sentinel)) int qt_run(const char *arg0, ...)
{
	va_list ap;
	int ret;

	va_start(ap, arg0);
	ret = qt_run_va(NULL, arg0, ap);
	va_end(ap);
	return ret;
}

/* qt_run_out(&out, "qemu-img", "info", ..., NULL) - exit status; stdout. */
static QT_UNUSED __attribute__((sentinel)) int qt_run_out(char **out, const char *arg0, ...)
{
	va_list ap;
	int ret;

	va_start(ap, arg0);
	ret = qt_run_va(out, arg0, ap);
	va_end(ap);
	return ret;
}

static QT_UNUSED bool qt_have_qemu(void)
{
	static int have = -1;

	if (have < 0)
		have = qt_run("qemu-img", "--version", NULL) == 0 &&
		       qt_run("qemu-io", "--version", NULL) == 0;
	return have;
}

/* Skip the current cmocka test, saying why, when qemu tools are missing. */
#define QT_REQUIRE_QEMU()                                                                          \
	do {                                                                                       \
		if (!qt_have_qemu()) {                                                             \
			print_message("SKIP: qemu-img/qemu-io not installed\n");                   \
			skip();                                                                    \
		}                                                                                  \
	} while (0)

static QT_UNUSED uint64_t qt_file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/*
 * qt_read - @len bytes at @off of @path into a malloc'ed buffer; bytes past
 * the end of the file read as zeros, as they do for QEMU.
 */
static QT_UNUSED uint8_t *qt_read(const char *path, uint64_t off, size_t len)
{
	uint8_t *buf = calloc(1, len ? len : 1);
	int fd = open(path, O_RDONLY);
	size_t done = 0;

	if (!buf || fd < 0) {
		perror(path);
		abort();
	}
	while (done < len) {
		ssize_t n = pread(fd, buf + done, len - done, (off_t)(off + done));

		if (n <= 0)
			break;
		done += (size_t)n;
	}
	close(fd);
	return buf;
}

static QT_UNUSED void qt_write(const char *path, uint64_t off, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY);

	if (fd < 0 || pwrite(fd, buf, len, (off_t)off) != (ssize_t)len) {
		perror(path);
		abort();
	}
	close(fd);
}

/* A qcow2_read_fn over a file descriptor in *@opaque. */
static QT_UNUSED int qt_read_fd(void *opaque, uint64_t offset, void *buf, size_t len)
{
	int fd = *(int *)opaque;
	size_t done = 0;

	memset(buf, 0, len);
	while (done < len) {
		ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(offset + done));

		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return 0;
}

/* qemu-img info --output=json, parsed; NULL on failure. */
static QT_UNUSED json_t *qt_info(const char *img)
{
	char *out = NULL;
	json_t *j = NULL;

	if (qt_run_out(&out, "qemu-img", "info", "-U", "--output=json", img, NULL) == 0)
		j = json_loads(out, 0, NULL);
	free(out);
	return j;
}

/* Look up a "/"-separated path of object keys. */
static QT_UNUSED json_t *qt_json_get(json_t *j, const char *path)
{
	char key[128];

	while (j && *path) {
		const char *slash = strchr(path, '/');
		size_t n = slash ? (size_t)(slash - path) : strlen(path);

		snprintf(key, sizeof(key), "%.*s", (int)n, path);
		j = json_object_get(j, key);
		path += n + (slash ? 1 : 0);
	}
	return j;
}

/*
 * Capturing stderr (where lib/log writes) around a call, to check that a
 * refusal was logged once and named its field.
 */
struct qt_capture {
	int saved;
	FILE *f;
};

static QT_UNUSED void qt_capture_begin(struct qt_capture *c)
{
	fflush(stderr);
	c->f = tmpfile();
	c->saved = dup(2);
	if (!c->f || c->saved < 0 || dup2(fileno(c->f), 2) < 0)
		abort();
}

/* Ends the capture; returns what was logged (malloc'ed) and echoes it. */
static QT_UNUSED char *qt_capture_end(struct qt_capture *c)
{
	long n;
	char *s;

	fflush(stderr);
	dup2(c->saved, 2);
	close(c->saved);
	n = ftell(c->f);
	s = calloc(1, (size_t)(n > 0 ? n : 0) + 1);
	rewind(c->f);
	if (s && n > 0 && fread(s, 1, (size_t)n, c->f) != (size_t)n)
		s[0] = '\0';
	fclose(c->f);
	if (s)
		fputs(s, stderr);
	return s;
}

static QT_UNUSED int qt_remove_one(const char *path, const struct stat *st, int flag,
				   struct FTW *ftw)
{
	remove(path);
	return 0;
}

/* Group teardown: the scratch directory goes unless QTAP_KEEP_TMP is set. */
static QT_UNUSED int qt_group_teardown(void **state)
{
	if (qt_dir_path[0] && !getenv("QTAP_KEEP_TMP"))
		nftw(qt_dir_path, qt_remove_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

#endif
