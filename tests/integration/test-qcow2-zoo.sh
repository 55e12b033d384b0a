#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The qcow2 read oracle: an image zoo made by qemu-img and qemu-io (v2 and
# v3, cluster sizes 512 B .. 2 MiB, refcount widths 1..64, extended L2 with
# subcluster writes, deflate and zstd compressed clusters, zero clusters
# with and without unmap, discards, internal snapshots, VM state, bitmaps,
# preallocation, a dirty lazy-refcounts image, backing chains of depth 3
# and more over raw and qcow2 bases with relative names, backing files
# shorter than their overlays), each read through qtap and compared byte
# for byte with qemu-img convert -O raw of the same image:
#
#   - tap-img convert -O raw gives exactly qemu-img's bytes;
#   - tap-img io read -P checks the patterns the image was written with;
#   - tap-img io read -v dumps an unaligned range exactly as qemu-io dumps
#     the reference;
#   - reading never changes the image file.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io cmp cksum

zoo=$(mktmp zoo)
mkdir -p "$zoo"
cd "$zoo"
count=0
# Under valgrind, io_check always runs under it, convert on every other
# image, and the unaligned dumps (the same read path again) natively: that
# keeps the test within the CI budget; ASan runs everything.
TAPIMG_ALSO=$TAPIMG
[ -z "$VG" ] || TAPIMG_ALSO=$BIN/tap-img

qio() { # qemu-io on a qcow2 image: image, commands (each with its -c)...
	_img=$1
	shift
	qemu-io -f qcow2 "$@" "$_img" >qio.out 2>&1 || die "qemu-io on $_img failed: $(cat qio.out)"
}

mk() { # image, size, qemu-img create options...
	_img=$1
	_size=$2
	shift 2
	qemu-img create -q -f qcow2 "$@" "$_img" "$_size" || die "qemu-img create $_img $* failed"
}

# tap-img io on IMG with every CMD as a -c: all must pass.
io_check() { # image, command...
	_img=$1
	shift
	_n=$#
	for _c in "$@"; do
		set -- "$@" -c "$_c"
	done
	shift "$_n"
	$TAPIMG io -f qcow2 -r "$@" "$_img" >io.out 2>&1 ||
		die "$_img: tap-img io failed: $(grep -v -e '^read ' -e ' ops; ' io.out)"
}

dump() { grep -E '^[0-9a-f]{8}:' || true; }

# The image against qemu-img's conversion of it: convert, io, dumps.
oracle() { # image, read -P commands for io_check...
	_img=$1
	shift
	_sum=$(cksum <"$_img")
	qemu-img convert -f qcow2 -O raw "$_img" ref.raw || die "qemu-img convert $_img failed"
	_conv=$TAPIMG
	[ $((count % 2)) -eq 0 ] || _conv=$TAPIMG_ALSO
	$_conv convert -f qcow2 "$_img" out.raw 2>conv.err ||
		die "$_img: tap-img convert failed: $(cat conv.err)"
	cmp ref.raw out.raw >cmp.out 2>&1 ||
		die "$_img: tap-img convert differs from qemu-img convert: $(cat cmp.out)"
	[ $# -eq 0 ] || io_check "$_img" "$@"
	_size=$(stat -c %s ref.raw)
	for _r in "101383 700" "$((_size / 2 - 333)) 1000" "$((_size - 777)) 777"; do
		# shellcheck disable=SC2086
		set -- $_r
		_a=$($TAPIMG_ALSO io -f qcow2 -r -c "read -v $1 $2" "$_img" | dump)
		_b=$(qemu-io -f raw -r -c "read -v $1 $2" ref.raw | dump)
		[ -n "$_a" ] && [ "$_a" = "$_b" ] || die "$_img: read -v $1 $2 differs from the reference"
	done
	# tap-img map: qemu-img map's JSON, host offsets included (both read the same
	# L2 tables); under valgrind, every fourth image
	if [ -z "$VG" ] || [ $((count % 4)) -eq 0 ]; then
		qemu-img map --output=json -f qcow2 "$_img" >qmap.json 2>qmap.err ||
			die "qemu-img map $_img failed: $(cat qmap.err)"
		$TAPIMG map --output=json -f qcow2 "$_img" >tmap.json 2>tmap.err ||
			die "$_img: tap-img map failed: $(cat tmap.err)"
		cmp -s qmap.json tmap.json ||
			die "$_img: map differs from qemu-img's: $(diff qmap.json tmap.json | head -20)"
	fi
	[ "$(cksum <"$_img")" = "$_sum" ] || die "$_img: reading it changed the file"
	count=$((count + 1))
}

# ---- a standard set of writes and what reads back ---------------------------
STD_WRITES="write -P 0x11 0 64k
write -P 0x22 100k 3k
write -P 0x33 1M 1M
write -z 1536k 128k
write -z -u 1M 64k
write -P 0x55 2560k 256k
discard 2624k 64k
write -P 0 3M 64k
write -P 0x44 4095k 1k"
STD_CHECKS="read -P 0x11 4k 60k
read -P 0x22 100k 3k
read -P 0 1M 64k
read -P 0x33 1088k 448k
read -P 0 1536k 128k
read -P 0x33 1664k 384k
read -P 0x55 2560k 64k
read -P 0 3M 64k
read -P 0x44 4095k 1k"

std_writes() { # image
	_img=$1
	set --
	while IFS= read -r _c; do set -- "$@" -c "$_c"; done <<EOF
$STD_WRITES
EOF
	qio "$_img" "$@"
}

std_oracle() { # image, extra read commands...
	_img=$1
	shift
	while IFS= read -r _c; do set -- "$@" "$_c"; done <<EOF
$STD_CHECKS
EOF
	oracle "$_img" "$@"
}

# ---- version and cluster size ------------------------------------------------
for compat in 0.10 1.1; do
	for cs in 512 1k 4k 64k 256k 2M; do
		img=std-$compat-$cs.qcow2
		mk "$img" 4M -o compat=$compat,cluster_size=$cs
		std_writes "$img"
		std_oracle "$img"
	done
done

# ---- refcount widths -----------------------------------------------------------
for rb in 1 2 4 8 16 32 64; do
	img=refcount-$rb.qcow2
	mk "$img" 4M -o refcount_bits=$rb,cluster_size=4k
	std_writes "$img"
	# Shared clusters (refcount 2, which 1-bit refcounts cannot count) through
	# a snapshot, then rewritten.
	[ "$rb" -eq 1 ] || qemu-img snapshot -c s1 "$img"
	qio "$img" -c 'write -P 0x66 200k 8k' -c 'write -P 0x67 3500k 4k' -c 'write -P 0x68 0 4k'
	std_oracle "$img" 'read -P 0x66 200k 8k' 'read -P 0x67 3500k 4k' 'read -P 0x68 0 4k'
done

# ---- backing files for what follows ------------------------------------------
qemu-img create -q -f raw base5a.raw 4M
qemu-io -f raw -c 'write -P 0x5a 0 4M' base5a.raw >/dev/null
qemu-img create -q -f raw short.raw 1M
qemu-io -f raw -c 'write -P 0x5b 0 1M' short.raw >/dev/null

# Zero clusters and discards over a backing file: zeros must hide it, in v3;
# v2 cannot record zeros, so discarded ranges show the backing file again.
for compat in 0.10 1.1; do
	for cs in 4k 64k; do
		img=over-$compat-$cs.qcow2
		mk "$img" 4M -o compat=$compat,cluster_size=$cs -b base5a.raw -F raw
		std_writes "$img"
		qio "$img" -c 'write -z 200k 64k' -c 'write -z -u 300k 128k' -c 'discard 448k 64k'
		std_oracle "$img" 'read -P 0x5a 3200k 64k'
	done
done

# ---- extended L2: subcluster writes over a backing file ----------------------
for cs in 16k 64k 128k 2M; do
	img=extl2-$cs.qcow2
	mk "$img" 4M -o extended_l2=on,cluster_size=$cs -b base5a.raw -F raw
	qio "$img" -c 'write -P 0x61 2k 2k' -c 'write -P 0x62 7k 3k' -c 'write -z 32k 4k' \
		-c 'write -z 128k 8k' -c 'write -z -u 40k 2k' -c 'write -P 0x63 1M 64k' \
		-c 'discard 1040k 4k' -c 'write -P 0x64 3M 1536' -c 'discard 2k 512' \
		-c 'write -P 0x65 2M 512' -c 'write -z 2M 512' -c 'write -P 0x66 2049k 3k'
	oracle "$img" 'read -P 0x61 2560 1536' 'read -P 0x62 7k 3k' 'read -P 0 32k 4k' \
		'read -P 0 128k 8k' 'read -P 0x63 1M 16k' 'read -P 0x64 3M 1536' \
		'read -P 0x5a 3584k 64k' 'read -P 0 2M 512' 'read -P 0x66 2049k 3k'
	# The same writes without a backing file: unallocated subclusters read zeros.
	img=extl2-nobacking-$cs.qcow2
	mk "$img" 4M -o extended_l2=on,cluster_size=$cs
	std_writes "$img"
	qio "$img" -c 'write -P 0x67 3600k 2k' -c 'discard 3601k 512'
	std_oracle "$img" 'read -P 0x67 3600k 1k'
done

# ---- compressed clusters: deflate and zstd ------------------------------------
qemu-img create -q -f raw csrc.raw 4M
head -c 512k /dev/urandom >random.bin
qemu-io -f raw -c 'write -P 0x71 0 1M' -c 'write -s random.bin 1M 512k' \
	-c 'write -P 0x72 2M 1M' -c 'write -s random.bin 3200k 512k' -c 'write -P 0x73 4092k 4k' \
	csrc.raw >/dev/null
head -c 3146240 csrc.raw >csrc-odd.raw # 3 MiB + 512: a short last cluster
CCHECKS="read -P 0x71 0 1M
read -P 0 1536k 512k
read -P 0x72 2M 1M"
for ct in zlib zstd; do
	for o in cluster_size=512 cluster_size=4k cluster_size=64k cluster_size=2M \
		compat=0.10 extended_l2=on; do
		[ "$ct:$o" = zstd:compat=0.10 ] && continue # zstd needs v3
		img=comp-$ct-${o#*=}.qcow2
		[ "$o" = compat=0.10 ] && img=comp-$ct-v2.qcow2
		[ "$o" = extended_l2=on ] && img=comp-$ct-extl2.qcow2
		qemu-img convert -c -f raw -O qcow2 -o "compression_type=$ct,$o" csrc.raw "$img"
		set --
		while IFS= read -r _c; do set -- "$@" "$_c"; done <<EOF
$CCHECKS
EOF
		oracle "$img" "$@" 'read -P 0x73 4092k 4k'
	done
	img=comp-$ct-odd.qcow2
	qemu-img convert -c -f raw -O qcow2 -o "compression_type=$ct" csrc-odd.raw "$img"
	oracle "$img" 'read -P 0x71 0 1M' 'read -P 0x72 2M 1M'
	# Rewrites inside compressed clusters, zeros over them, a discard.
	img=comp-$ct-rewritten.qcow2
	qemu-img convert -c -f raw -O qcow2 -o "compression_type=$ct" csrc.raw "$img"
	qio "$img" -c 'write -P 0x74 66048 1k' -c 'write -z 128k 64k' -c 'discard 256k 64k' \
		-c 'write -z -u 2M 64k'
	oracle "$img" 'read -P 0x74 66048 1k' 'read -P 0x71 67072 1k' 'read -P 0 128k 64k'
	# Compressed clusters written by qemu-io into an overlay.
	img=comp-$ct-overlay.qcow2
	mk "$img" 4M -o compression_type=$ct -b base5a.raw -F raw
	qio "$img" -c 'write -c -P 0x75 0 64k' -c 'write -c -P 0x76 1M 64k' \
		-c 'write -c -s random.bin 2M 64k' -c 'write -P 0x77 1M 4k'
	oracle "$img" 'read -P 0x75 0 64k' 'read -P 0x77 1M 4k' 'read -P 0x76 1028k 60k' \
		'read -P 0x5a 64k 64k'
done

# ---- internal snapshots and VM state -------------------------------------------
img=snap.qcow2
mk "$img" 4M -o cluster_size=4k
std_writes "$img"
qemu-img snapshot -c s1 "$img"
qio "$img" -c 'write -P 0x81 0 128k' -c 'write -z 1M 64k' -c 'discard 2M 64k' \
	-c 'write -b -P 0x82 0 64k'
qemu-img snapshot -c s2 "$img"
qio "$img" -c 'write -P 0x83 64k 4k' -c 'write -P 0x84 3M 8k'
oracle "$img" 'read -P 0x81 0 64k' 'read -P 0x83 64k 4k' 'read -P 0x84 3M 8k' \
	'read -P 0 1M 64k'
# Back to s1, then more writes: the active L1 is a copy of s1's.
qemu-img snapshot -a s1 "$img"
qio "$img" -c 'write -P 0x85 512k 64k'
std_oracle "$img" 'read -P 0x85 512k 64k'

# ---- preallocation, bitmaps, lazy refcounts, an odd size -----------------------
for p in metadata falloc full; do
	img=prealloc-$p.qcow2
	mk "$img" 4M -o preallocation=$p
	std_writes "$img"
	std_oracle "$img"
done
img=bitmaps.qcow2
mk "$img" 4M
qemu-img bitmap --add "$img" b0
std_writes "$img"
qemu-img bitmap --add "$img" b1
std_oracle "$img"
img=lazy-dirty.qcow2
mk "$img" 4M -o lazy_refcounts=on
std_writes "$img"
# Killed while dirty: the dirty bit stays set; reads are unaffected.
qemu-io -f qcow2 -c 'write -P 0x91 2M 64k' -c flush -c 'sigraise 9' "$img" >/dev/null 2>&1 || true
[ "$(od -An -tu1 -j79 -N1 "$img" | tr -d ' ')" = 1 ] || die "$img: the dirty bit is not set"
oracle "$img" 'read -P 0x91 2M 64k'
img=odd-size.qcow2
mk "$img" 3146240 # 3 MiB + 512
qio "$img" -c 'write -P 0x92 3M 512' -c 'write -P 0x93 0 4k'
oracle "$img" 'read -P 0x92 3M 512' 'read -P 0x93 0 4k'

# ---- backing chains ------------------------------------------------------------
# Depth 4 over a raw base, made from another directory with relative names
# (resolved against each overlay's directory, never the working directory):
#   chain/base.raw <- chain/sub/l1.qcow2 ("../base.raw")
#     <- chain/l2.qcow2 ("sub/l1.qcow2") <- chain/l3.qcow2 ("l2.qcow2")
#     <- chain/sub/l4.qcow2 ("../l3.qcow2")
mkdir -p chain/sub elsewhere other
(
	cd elsewhere
	qemu-img create -q -f raw ../chain/base.raw 4M
	qemu-io -f raw -c 'write -P 0xa0 0 4M' ../chain/base.raw >/dev/null
	qemu-img create -q -f qcow2 -b ../base.raw -F raw ../chain/sub/l1.qcow2 4M
	qemu-io -f qcow2 -c 'write -P 0xa1 64k 64k' -c 'write -z 1M 64k' ../chain/sub/l1.qcow2
	qemu-img create -q -f qcow2 -o cluster_size=4k -b sub/l1.qcow2 -F qcow2 ../chain/l2.qcow2 4M
	qemu-io -f qcow2 -c 'write -P 0xa2 128k 4k' -c 'discard 64k 4k' ../chain/l2.qcow2
	qemu-img create -q -f qcow2 -o extended_l2=on -b l2.qcow2 -F qcow2 ../chain/l3.qcow2 4M
	qemu-io -f qcow2 -c 'write -P 0xa3 2k 2k' -c 'write -z 1M 4k' ../chain/l3.qcow2
	qemu-img create -q -f qcow2 -b ../l3.qcow2 -F qcow2 ../chain/sub/l4.qcow2 4M
	qemu-io -f qcow2 -c 'write -P 0xa4 3M 64k' ../chain/sub/l4.qcow2
) >/dev/null || die "building the raw-based chain failed"
grep -q 'sub/l1.qcow2' chain/l2.qcow2 || die "qemu-img did not store a relative name"
for img in chain/sub/l1.qcow2 chain/l2.qcow2 chain/l3.qcow2 chain/sub/l4.qcow2; do
	oracle "$img" 'read -P 0xa0 3200k 64k'
done
io_check chain/sub/l4.qcow2 'read -P 0xa4 3M 64k' 'read -P 0xa3 2k 2k' 'read -P 0xa0 0 2k' \
	'read -P 0xa2 128k 4k' 'read -P 0xa1 68k 60k' 'read -P 0 1M 64k'
# Whatever the working directory and however the top is named.
qemu-img convert -f qcow2 -O raw chain/sub/l4.qcow2 chain-ref.raw
ref_sum=$(cksum <chain-ref.raw)
(cd other && $TAPIMG convert -f qcow2 ../chain/sub/l4.qcow2 ../rel.raw) ||
	die "convert from another directory failed"
[ "$(cksum <rel.raw)" = "$ref_sum" ] || die "convert from another directory differs"
(cd chain/sub && $TAPIMG convert "qcow2:l4.qcow2" ../../rel2.raw) ||
	die "convert of a bare relative name failed"
[ "$(cksum <rel2.raw)" = "$ref_sum" ] || die "convert of a bare relative name differs"

# Depth 3 over a qcow2 base, each level shorter or longer than the next:
# past the end of a backing file reads zeros, whatever lies below it.
mk q0.qcow2 8M -o cluster_size=16k
qio q0.qcow2 -c 'write -P 0xb0 0 8M'
mk q1.qcow2 2M -o compat=0.10 -b q0.qcow2 -F qcow2
qio q1.qcow2 -c 'write -P 0xb1 1M 64k'
mk q2.qcow2 6M -o cluster_size=2M -b q1.qcow2 -F qcow2
qio q2.qcow2 -c 'write -P 0xb2 5M 4k'
mk q3.qcow2 8M -o extended_l2=on,cluster_size=32k -b q2.qcow2 -F qcow2
qio q3.qcow2 -c 'write -P 0xb3 1k 1k' -c 'write -P 0xb4 7M 1k' -c 'write -z 1056k 1k'
oracle q3.qcow2 'read -P 0xb0 0 1k' 'read -P 0xb3 1k 1k' 'read -P 0xb0 2k 62k' \
	'read -P 0xb1 1M 32k' 'read -P 0 1056k 1k' 'read -P 0 2M 3M' 'read -P 0xb2 5M 4k' \
	'read -P 0 6M 1M' 'read -P 0xb4 7M 1k'

# A backing file shorter than its overlay, raw and qcow2, and one whose size
# is not a multiple of 512 bytes.
img=short-raw.qcow2
mk "$img" 4M -b short.raw -F raw
qio "$img" -c 'write -P 0x5c 512k 4k' -c 'write -P 0x5d 3M 4k'
oracle "$img" 'read -P 0x5b 0 512k' 'read -P 0x5c 512k 4k' 'read -P 0 1M 2M' 'read -P 0x5d 3M 4k'
img=short-qcow2.qcow2
mk short.qcow2 1088k -o cluster_size=64k
qio short.qcow2 -c 'write -P 0x5e 0 1088k'
mk "$img" 4M -o cluster_size=1M -b short.qcow2 -F qcow2
oracle "$img" 'read -P 0x5e 0 1088k' 'read -P 0 1088k 960k'
head -c 1000 base5a.raw >odd.raw
img=odd-backing.qcow2
mk "$img" 1M -o cluster_size=4k -b odd.raw -F raw
qio "$img" -c 'write -P 0x5f 8k 4k'
oracle "$img" 'read -P 0x5a 0 1000' 'read -P 0 1000 3096' 'read -P 0x5f 8k 4k'

echo "$count images read identically to qemu-img"
[ "$count" -ge 60 ] || die "only $count images in the zoo"
exit 0
