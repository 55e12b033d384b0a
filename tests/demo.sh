#!/bin/sh
# SPDX-License-Identifier: MIT
#
# make demo: show what qtap does today, as a user would type it.  Creates a
# raw image under BUILD/demo, then runs a seeded random read/write load with
# data verification through the raw driver on each aio engine, and prints
# the figures.  Usage: tests/demo.sh BUILD_DIR
set -eu

build=${1:?usage: tests/demo.sh BUILD_DIR}
PATH=$build/bin:$PATH
export PATH
demo=$build/demo
img=$demo/disk.raw
secs=${QTAP_DEMO_SECONDS:-2}

# Print a command the way a user would type it (quoting words with
# spaces), then run it.
run() {
	line="$"
	for word in "$@"; do
		case $word in
		*" "*) line="$line '$word'" ;;
		*) line="$line $word" ;;
		esac
	done
	printf '%s\n' "$line"
	"$@"
}

# A field of tap-img bench's JSON (four-space indented, one key per line);
# the last one when the key repeats (verify.errors comes after errors).
field() { # json key
	printf '%s\n' "$1" | sed -n "s/^ *\"$2\": \([^,]*\),\{0,1\}\$/\1/p" | tail -n 1
}

rm -rf "$demo"
mkdir -p "$demo"
echo "== Create a 1 GiB raw image (space reserved with fallocate)"
run tap-img create -f raw -o preallocation=falloc "$img" 1G
echo
echo "== Write and verify a pattern through the raw driver, as qemu-io would"
run tap-img io -c 'write -P 0xab 0 64k' -c 'read -P 0xab 0 64k' "$img"
echo
if command -v qemu-io >/dev/null 2>&1; then
	echo "== QEMU reads the same bytes from the same file"
	printf '$ %s\n' "qemu-io -f raw -r -c 'read -P 0xab 0 64k' $img"
	qemu-io -f raw -r -c 'read -P 0xab 0 64k' "$img"
	echo
fi
echo "== Seeded random 4k read/write load, depth 32, ${secs}s per aio engine;"
echo "   every block written is read back and compared at the end"
rows="" failed=0
for engine in io_uring libaio sync; do
	if out=$(run tap-img bench --rw randrw --verify --seed 42 --time "$secs" -d 32 -s 4k \
		-i "$engine" --output=json "$img"); then
		printf '%s\n' "$out" | sed -n '1p'
		rows="$rows$(printf '%-9s %10.0f %9.1f %10.1f %9s %6s' "$engine" \
			"$(field "$out" iops)" "$(field "$out" mib_s)" "$(field "$out" p99)" \
			"$(field "$out" blocks)" "$(field "$out" errors)")
"
	else
		printf '%s\n' "$out" | sed -n '1p'
		rows="$rows$(printf '%-9s %s' "$engine" "FAILED (see above)")
"
		failed=1
	fi
done
echo
printf '%-9s %10s %9s %10s %9s %6s\n' engine IOPS MiB/s "p99 (us)" verified wrong
printf '%s' "$rows"
echo
if [ "$failed" -ne 0 ]; then
	echo "demo: a run failed"
	exit 1
fi
echo "All engines wrote, read back and verified their data."
echo "Next: tap-img io -c 'read -P 0xab 0 64k' FILE, tap-img bench --help."
