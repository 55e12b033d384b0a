#!/bin/sh
# SPDX-License-Identifier: MIT
# make format-check: every tracked C file is as clang-format leaves it.
set -eu
bad=0
for f in $(git ls-files '*.c' '*.h'); do
	if ! clang-format --style=file "$f" | cmp -s - "$f"; then
		echo "format-check: $f differs from clang-format (run make format)"
		bad=1
	fi
done
exit $bad
