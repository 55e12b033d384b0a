#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img create -f qcow2 refuses what qemu-img create refuses, with exit
# status 1 and qemu-img's message (which names the option at fault), and
# leaves an existing file alone when it does (qemu-img deletes it).
. "$(dirname "$0")/functions.sh"
requires qemu-img

cd "$TEST_DIR"
qemu-img create -q -f qcow2 base.qcow2 1M

# refused MESSAGE ARGS...: both tools fail on ARGS and ours says MESSAGE.
refused() {
	msg=$1
	shift
	qemu-img create -f qcow2 "$@" >/dev/null 2>&1 && die "qemu-img accepted $*"
	echo keep >x.qcow2
	set +e
	out=$($TAPIMG create -f qcow2 "$@" 2>&1)
	rc=$?
	set -e
	[ $rc -eq 1 ] || die "create $*: exit $rc, expected 1: $out"
	echo "$out" | grep -qF "$msg" || die "create $*: message '$out' lacks '$msg'"
	[ "$(cat x.qcow2)" = keep ] || die "create $*: an invalid create changed the file"
}

refused "Cluster size must be a power of two between 512 and 2048k" \
	-o cluster_size=1000 x.qcow2 1M
refused "Cluster size must be a power of two between 512 and 2048k" \
	-o cluster_size=4M x.qcow2 1M
refused "Parameter 'cluster_size' expects a non-negative number below 2^64" \
	-o cluster_size=abc x.qcow2 1M
refused "Parameter 'version' does not accept value '0.9'" -o compat=0.9 x.qcow2 1M
refused "Different refcount widths than 16 bits require compatibility level 1.1" \
	-o compat=v2,refcount_bits=8 x.qcow2 1M
refused "Refcount width must be a power of two and may not exceed 64 bits" \
	-o refcount_bits=3 x.qcow2 1M
refused "Refcount width must be a power of two and may not exceed 64 bits" \
	-o refcount_bits=128 x.qcow2 1M
refused "Parameter 'refcount_bits' expects a number" -o refcount_bits=abc x.qcow2 1M
refused "Parameter 'lazy_refcounts' expects 'on' or 'off'" -o lazy_refcounts=maybe x.qcow2 1M
refused "Lazy refcounts only supported with compatibility level 1.1" \
	-o compat=v2,lazy_refcounts=on x.qcow2 1M
refused "Extended L2 entries are only supported with cluster sizes of at least 16384 bytes" \
	-o extended_l2=on,cluster_size=8k x.qcow2 1M
refused "Extended L2 entries are only supported with compatibility level 1.1" \
	-o compat=v2,extended_l2=on x.qcow2 1M
refused "Parameter 'compression-type' does not accept value 'lz4'" \
	-o compression_type=lz4 x.qcow2 1M
refused "Non-zlib compression type is only supported with compatibility level 1.1" \
	-o compat=v2,compression_type=zstd x.qcow2 1M
refused "Parameter 'preallocation' does not accept value 'foo'" \
	-o preallocation=foo x.qcow2 1M
refused "Invalid parameter 'foo'" -o foo=bar x.qcow2 1M
refused "Image creation needs a size parameter" x.qcow2
refused "Invalid image size specified" x.qcow2 abc
refused "Invalid image size specified. Must be between 0 and 9223372036854775807." x.qcow2 99E
refused "The image size is too large for file format 'qcow2'" x.qcow2 3P
refused "The image size is too large for file format 'qcow2'" -o cluster_size=512 x.qcow2 1P
refused "The image size must be specified only once" -o size=2M x.qcow2 3M
refused "Backing file specified without backing format" -b base.qcow2 x.qcow2
refused "Backing file specified without backing format" -u -b base.qcow2 x.qcow2 1M
refused "Could not open 'nothere.qcow2': No such file or directory" \
	-b nothere.qcow2 -F qcow2 x.qcow2
refused "Unknown driver 'foo'" -b base.qcow2 -F foo x.qcow2
refused "Backing format cannot be used without backing file" -F qcow2 x.qcow2 1M
refused "Backing file and preallocation can only be used at the same time if extended_l2 is on" \
	-b base.qcow2 -F qcow2 -o preallocation=metadata x.qcow2
refused "Trying to create an image with the same filename as the backing file" \
	-b x.qcow2 -F qcow2 x.qcow2 1M
refused "Expected backing file name, got empty string" -b "" -F qcow2 x.qcow2 1M
# a relative backing name is looked up next to the new image, not here
mkdir sub
refused "Could not open 'sub/base.qcow2': No such file or directory" \
	-b base.qcow2 -F qcow2 sub/x.qcow2

# raw has no backing files
out=$($TAPIMG create -f raw -b base.qcow2 x.raw 1M 2>&1) && die "raw accepted -b"
echo "$out" | grep -qF "Backing file not supported for file format 'raw'" ||
	die "raw -b: bad message: $out"
exit 0
