#!/bin/sh
# SPDX-License-Identifier: MIT
#
# make lint: the rules of STYLE.md a grep can check.
#  - banned functions (atoi, strcpy, sprintf, ...) and VLAs (-Wvla does that)
#  - include direction: control/ never includes drivers/; lib/ includes
#    nothing of ours outside lib/
#  - functions over 100 lines are listed (a review flag, not a failure)
set -eu
rc=0
files=$(git ls-files '*.c' '*.h')

banned='\b(atoi|atol|atoll|strcpy|strcat|strncpy|sprintf|vsprintf|strtok|gets|alloca)[[:space:]]*\('
if grep -nE "$banned" $files; then
	echo "lint: banned function (see STYLE.md)"
	rc=1
fi

for f in $(git ls-files 'control/*.c' 'control/*.h'); do
	if grep -nE '#include "(drivers/|driver\.h|qcow2/|raw)' "$f"; then
		echo "lint: $f: control/ must not include drivers/"
		rc=1
	fi
done
for f in $(git ls-files 'lib/*.c' 'lib/*.h'); do
	if grep -nE '#include "(drivers|tapdisk|control|tools)/' "$f"; then
		echo "lint: $f: lib/ must not include other qtap directories"
		rc=1
	fi
done

# Long functions: a '{' in column 0 opens a function body, '}' closes it.
for f in $(git ls-files '*.c'); do
	awk -v f="$f" '
		/^\{/ { start = NR }
		/^\}/ && start { n = NR - start; if (n > 100) printf "lint: note: %s:%d: function of %d lines\n", f, start, n; start = 0 }
	' "$f"
done
exit $rc
