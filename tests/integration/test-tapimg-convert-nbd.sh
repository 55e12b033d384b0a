#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img convert from an NBD export (qemu-nbd serving a qcow2 image, read
# through libnbd with its base:allocation block status), and convert -c /
# -W with several worker threads over an image of several segments: the
# results read as qemu-img's conversions of the same source, pass
# qemu-img check, keep holes as holes, and are compressed with the type
# asked for.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io qemu-nbd

cd "$TEST_DIR"
pids=""
on_exit 'for p in $pids; do kill $p 2>/dev/null; wait $p 2>/dev/null; done'

# a 200 MiB disk: data, zeros and holes in each 64 MiB segment of the copy
qemu-img create -q -f qcow2 src.qcow2 200M
qemu-io -f qcow2 -c 'write -P 0x11 0 3M' -c 'write -P 0 5M 1M' -c 'write -z 8M 2M' \
	-c 'write -P 0x22 65M 4M' -c 'write -P 0x33 130M 512k' -c 'write -P 0x44 199M 1M' \
	src.qcow2 >/dev/null
qemu-img convert -O raw src.qcow2 ref.raw

# ---- from an NBD export -------------------------------------------------------------
sock="$TEST_DIR/nbd.sock"
qemu-nbd -r -t -f qcow2 -k "$sock" src.qcow2 &
pids=$!
wait_for_path "$sock" || die "qemu-nbd did not start"
uri="nbd+unix:///?socket=$sock"
$TAPIMG convert "$uri" nbd.raw || die "convert from $uri to raw failed"
cmp ref.raw nbd.raw || die "the raw copy of the export differs"
[ "$(du -k nbd.raw | cut -f1)" -lt 20000 ] || die "holes of the export were written as data"
$TAPIMG convert -f raw -O qcow2 "$uri" nbd.qcow2 || die "convert from $uri to qcow2 failed"
qemu-img check -q nbd.qcow2 || die "nbd.qcow2 is not clean"
qemu-img compare -q -f raw -F qcow2 ref.raw nbd.qcow2 || die "nbd.qcow2 differs"
$TAPIMG convert -f qcow2 "$uri" bad.raw 2>/dev/null && die "qcow2 over NBD accepted"
kill "$pids"
wait "$pids" 2>/dev/null || true
pids=""
$TAPIMG convert "$uri" gone.raw 2>/dev/null && die "convert from a stopped server succeeded"

# ---- several workers ------------------------------------------------------------------
for args in "-c" "-c -o compression_type=zstd" "-W" "-W -c -m 4"; do
	# shellcheck disable=SC2086
	$TAPIMG convert -f qcow2 -O qcow2 $args src.qcow2 w.qcow2 || die "convert $args failed"
	qemu-img check -q w.qcow2 || die "convert $args: not clean"
	qemu-img compare -q -f raw -F qcow2 ref.raw w.qcow2 || die "convert $args: differs"
	case $args in
	*zstd*) qemu-img info w.qcow2 | grep -q 'compression type: zstd' || die "not zstd" ;;
	esac
	case $args in
	*-c*)
		qemu-img check w.qcow2 | grep -q '[1-9][0-9.]*% compressed' ||
			die "convert $args wrote no compressed cluster"
		;;
	esac
done
out=$($TAPIMG convert -p -W -f qcow2 src.qcow2 p.raw) || die "convert -p failed"
case $out in *"(100.00/100%)"*) ;; *) die "-p printed: $out" ;; esac
cmp ref.raw p.raw || die "convert -p -W differs"
exit 0
