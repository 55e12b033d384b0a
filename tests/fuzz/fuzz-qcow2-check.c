// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the input is a whole qcow2 image file.
 *
 * It is written to a temporary file and checked three times: read-only,
 * then with QCOW2_CHECK_REPAIR_ALL, then read-only again.  Beyond memory
 * safety (and bounded memory: the check allocates from the file's size,
 * never from a header field alone) it checks one property: a repair that
 * ends without corruptions or check errors leaves an image whose second
 * check completes without check errors.  (It may still find a corruption:
 * QEMU's repair, which this one follows, can uncover a reference that was
 * past the end of the file before the rebuild grew it.)  A violation
 * aborts, which libFuzzer reports as a crash.
 *
 * Built only by `make fuzz` (tests/fuzz/run.sh), never by `make all`.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qcow2/check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void quiet(void *opaque, const char *line)
{
	(void)opaque;
	(void)line;
}

static int run(const char *path, unsigned flags, struct qcow2_check_result *res)
{
	struct qcow2_check_opts opts = { .flags = flags, .report = quiet };

	return qcow2_check_ex(path, &opts, res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[] = "/tmp/fuzz-qcow2-check-XXXXXX";
	struct qcow2_check_result res;
	int fd = mkstemp(path);
	int err;

	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);
	(void)run(path, 0, &res);
	err = run(path, QCOW2_CHECK_REPAIR_ALL, &res);
	if (!err && !res.corruptions && !res.check_errors) {
		err = run(path, 0, &res);
		if (err || res.check_errors) {
			fprintf(stderr,
				"fuzz-qcow2-check: repaired image: check failed (%d, %llu)\n", err,
				(unsigned long long)res.check_errors);
			abort();
		}
	}
	unlink(path);
	return 0;
}
