#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Hostile qcow2 images: one crafted image per class of qcow2-notes.md §8
# (header fields, table sizes and offsets, overlaps, extensions, feature
# bits, backing names and chains, corrupt L1/L2 entries, compressed
# descriptors past the end of the file, ...), each made by patching bytes
# of an image qemu-img made.  tap-img io and convert (and info, where the
# verb exists) must refuse each with exit status 1 and a message naming the
# field at fault, never crash (make check-asan runs this under ASan and
# UBSan, which abort on the first error: exit 134), and keep serving what
# is still valid: a later read of a good range in the same process works,
# and so does a good image afterwards.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io od dd cmp

dir=$(mktmp hostile)
mkdir -p "$dir"
cd "$dir"
count=0
has_info=false
$TAPIMG info --help >/dev/null 2>&1 && has_info=true

# ---- byte patching -----------------------------------------------------------------

peek() { # file, offset, bytes: lower-case hex
	od -An -tx1 -v -j "$2" -N "$3" "$1" | tr -d ' \n'
}

poke() { # file, offset, hex bytes
	printf "$(printf '%s' "$3" | awk '{
		h = "0123456789abcdef"; s = tolower($0)
		for (i = 1; i < length(s); i += 2)
			printf "\\%03o", (index(h, substr(s, i, 1)) - 1) * 16 + index(h, substr(s, i + 1, 1)) - 1
	}')" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

poke32() { poke "$1" "$2" "$(printf '%08x' "$3")"; }
poke64() { poke "$1" "$2" "$(printf '%016x' "$3")"; }
peek64() { echo $((0x$(peek "$1" "$2" 8))); }

# Header fields (qcow2-notes.md §1.1).
H_BACKING_OFF=8 H_BACKING_SIZE=16 H_CLUSTER_BITS=20 H_SIZE=24 H_CRYPT=32 H_L1_SIZE=36
H_L1_OFF=40 H_RT_OFF=48 H_RT_CLUSTERS=56 H_NB_SNAP=60 H_SNAP_OFF=64 H_INCOMPAT=72
H_AUTOCLEAR=88 H_REFCOUNT_ORDER=96 H_HEADER_LEN=100 H_COMPRESSION=104

# ---- images to start from ------------------------------------------------------------

# good.qcow2: 4 MiB, 64 KiB clusters, 0x11 at 0 and 0x22 at 1M (one L2 table).
qemu-img create -q -f qcow2 good.qcow2 4M
qemu-io -f qcow2 -c 'write -P 0x11 0 64k' -c 'write -P 0x22 1M 64k' -c 'write -P 0x33 3M 64k' \
	good.qcow2 >/dev/null
L1=$(peek64 good.qcow2 $H_L1_OFF)
L2=$(($(peek64 good.qcow2 "$L1") & 0x00fffffffffffe00))
FILE_BYTES=$(stat -c %s good.qcow2)

fresh() { # name: a copy of good.qcow2
	cp good.qcow2 "$1"
}

# ---- expectations ----------------------------------------------------------------------

# Each hostile image is opened by io, convert and info, through the same
# open path; under valgrind io runs under it and the others natively, which
# keeps the test's time within the CI budget (ASan runs all three).
TAPIMG_ALSO=$TAPIMG
[ -z "$VG" ] || TAPIMG_ALSO=$BIN/tap-img

# Run a tap-img command: exit status 1 (not a crash, not success) and the
# pattern in its output.
expect_refusal() { # what, pattern, command...
	_what=$1 _pat=$2
	shift 2
	_rc=0
	"$@" >out.txt 2>&1 || _rc=$?
	[ "$_rc" -eq 1 ] || die "$_what: '$*' exited $_rc, not 1: $(tail -n 5 out.txt)"
	grep -q -- "$_pat" out.txt || die "$_what: '$*' does not say '$_pat': $(cat out.txt)"
}

# Refused when the chain is opened: io, convert.
refuse_chain() { # image, pattern
	expect_refusal "$1" "$2" $TAPIMG io -f qcow2 -r -c 'read 0 64k' "$1"
	rm -f refused.raw
	expect_refusal "$1" "$2" $TAPIMG_ALSO convert -f qcow2 "$1" refused.raw
	[ ! -e refused.raw ] || die "$1: convert created its target before refusing the source"
	count=$((count + 1))
}

# Refused when the image itself is opened: info too (which, as qemu-img
# info, does not need the backing chain).
refuse_open() { # image, pattern
	refuse_chain "$@"
	# info reads only the image: where qemu-img info describes it, ours may
	# too, or refuse it as the stricter open does (exit 1, naming the field)
	if $has_info && qemu-img info -f qcow2 "$1" >/dev/null 2>&1 &&
		$TAPIMG_ALSO info -f qcow2 "$1" >out.txt 2>&1; then
		:
	elif $has_info; then
		expect_refusal "$1" "$2" $TAPIMG_ALSO info -f qcow2 "$1"
	fi
}

# Opens, but reading the bad range fails; the same process still reads
# @good_cmd (a read -P of a range the damage does not reach) correctly.
refuse_read() { # image, pattern, bad range "OFF LEN", good read command
	expect_refusal "$1" "$2" $TAPIMG io -f qcow2 -r -c "read $3" -c "$4" "$1"
	grep -q "^read .* bytes at offset" out.txt || die "$1: the good read after the bad one failed"
	grep -q 'Pattern verification failed' out.txt && die "$1: the good read returned bad data"
	expect_refusal "$1" "$2" $TAPIMG_ALSO convert -f qcow2 "$1" out.raw
	rm -f out.raw
	count=$((count + 1))
}

# ---- header fields ----------------------------------------------------------------------

fresh magic.qcow2
poke magic.qcow2 0 514649fa
refuse_open magic.qcow2 'magic'
head -c 50 good.qcow2 >short-header.qcow2
refuse_open short-header.qcow2 'qcow2'
: >empty.qcow2
refuse_open empty.qcow2 'qcow2'

for v in 1 4 0xffffffff; do
	fresh "version-$v.qcow2"
	poke32 "version-$v.qcow2" 4 "$v"
	refuse_open "version-$v.qcow2" "version $((v))"
done

for b in 8 22 0xffffffff; do
	fresh "cluster-bits-$b.qcow2"
	poke32 "cluster-bits-$b.qcow2" $H_CLUSTER_BITS "$b"
	refuse_open "cluster-bits-$b.qcow2" 'cluster_bits'
done

for len in 96 108 0x20000 0xfffffff8; do
	fresh "header-length-$len.qcow2"
	poke32 "header-length-$len.qcow2" $H_HEADER_LEN "$len"
	refuse_open "header-length-$len.qcow2" 'header_length'
done

fresh crypt.qcow2
poke32 crypt.qcow2 $H_CRYPT 3
refuse_open crypt.qcow2 'crypt_method 3'

fresh crypt-aes.qcow2
poke32 crypt-aes.qcow2 $H_CRYPT 1
refuse_open crypt-aes.qcow2 'encrypted images (crypt_method 1) are not supported'
fresh crypt-luks.qcow2
poke32 crypt-luks.qcow2 $H_CRYPT 2
refuse_open crypt-luks.qcow2 'crypt_method 2 (LUKS) without a full disk encryption header'

for o in 7 64; do
	fresh "refcount-order-$o.qcow2"
	poke32 "refcount-order-$o.qcow2" $H_REFCOUNT_ORDER "$o"
	refuse_open "refcount-order-$o.qcow2" 'refcount_order'
done

# Unknown incompatible bits: the message names the bit.
for bit in 5 31 63; do
	fresh "incompat-$bit.qcow2"
	poke64 "incompat-$bit.qcow2" $H_INCOMPAT $((1 << bit))
	refuse_open "incompat-$bit.qcow2" "bit $bit"
done
# ... with the image's own name for it when its feature table has one:
# entry 0 of the table ("dirty bit") renumbered to bit 9.
fresh incompat-named.qcow2
poke incompat-named.qcow2 121 09
poke64 incompat-named.qcow2 $H_INCOMPAT $((1 << 9))
refuse_open incompat-named.qcow2 'bit 9 (dirty bit)'

# Compression type: unknown, or disagreeing with incompatible bit 3.
fresh compression-2.qcow2
poke compression-2.qcow2 $H_COMPRESSION 02
poke64 compression-2.qcow2 $H_INCOMPAT 8
refuse_open compression-2.qcow2 'compression_type 2'
fresh compression-bit.qcow2
poke compression-bit.qcow2 $H_COMPRESSION 01
refuse_open compression-bit.qcow2 'compression_type 1 but incompatible bit 3'

# Raw external data (autoclear bit 1) without an external data file.
fresh data-file-raw.qcow2
poke64 data-file-raw.qcow2 $H_AUTOCLEAR 2
refuse_open data-file-raw.qcow2 'raw external data without an external data file'

# The corrupt bit: read-only opens only (convert reads read-only).
fresh corrupt.qcow2
poke64 corrupt.qcow2 $H_INCOMPAT 2
expect_refusal corrupt.qcow2 'image is corrupt; cannot be opened read/write' \
	$TAPIMG io -f qcow2 -c 'read -P 0x11 0 64k' corrupt.qcow2
$TAPIMG io -f qcow2 -r -c 'read -P 0x11 0 64k' corrupt.qcow2 >/dev/null ||
	die "corrupt.qcow2: a read-only open was refused"
$TAPIMG convert -f qcow2 corrupt.qcow2 out.raw || die "corrupt.qcow2: convert failed"
count=$((count + 1))

# Extended L2 entries with 8 KiB clusters: subclusters of 256 bytes.
qemu-img create -q -f qcow2 -o cluster_size=8k small.qcow2 1M
fresh_small() { cp small.qcow2 "$1"; }
fresh_small extl2-small.qcow2
poke64 extl2-small.qcow2 $H_INCOMPAT 16
refuse_open extl2-small.qcow2 'too small for extended L2'

# Virtual size: more L1 entries than an int holds, or than l1_size says.
fresh size-huge.qcow2
poke64 size-huge.qcow2 $H_SIZE 0x7fffffffffffffff
refuse_open size-huge.qcow2 'is too big'
fresh l1-too-small.qcow2
poke64 l1-too-small.qcow2 $H_SIZE $((1 << 40))
refuse_open l1-too-small.qcow2 'l1_size 1 is too small'

# ---- tables: sizes, offsets, overlaps -----------------------------------------------------

fresh l1-huge.qcow2
poke32 l1-huge.qcow2 $H_L1_SIZE 0x10000000
refuse_open l1-huge.qcow2 'L1 table size'
fresh l1-unaligned.qcow2
poke64 l1-unaligned.qcow2 $H_L1_OFF $((L1 + 512))
refuse_open l1-unaligned.qcow2 'L1 table offset 0x30200 is not cluster aligned'
fresh l1-overflow.qcow2
poke32 l1-overflow.qcow2 $H_L1_SIZE 0x400000
poke64 l1-overflow.qcow2 $H_L1_OFF 0x7ffffffffff00000
refuse_open l1-overflow.qcow2 'L1 table offset 0x7ffffffffff00000'
fresh l1-over-header.qcow2
poke64 l1-over-header.qcow2 $H_L1_OFF 0
refuse_open l1-over-header.qcow2 'L1 table at 0x0 .* overlaps the header'
fresh l1-over-reftable.qcow2
poke64 l1-over-reftable.qcow2 $H_L1_OFF "$(peek64 good.qcow2 $H_RT_OFF)"
refuse_open l1-over-reftable.qcow2 'overlaps'

fresh reftable-zero.qcow2
poke32 reftable-zero.qcow2 $H_RT_CLUSTERS 0
refuse_open reftable-zero.qcow2 'refcount_table_clusters is 0'
fresh reftable-huge.qcow2
poke32 reftable-huge.qcow2 $H_RT_CLUSTERS 0x10000000
refuse_open reftable-huge.qcow2 'refcount table size'
fresh reftable-unaligned.qcow2
poke64 reftable-unaligned.qcow2 $H_RT_OFF 0x10008
refuse_open reftable-unaligned.qcow2 'refcount table offset 0x10008 is not cluster aligned'
fresh reftable-overflow.qcow2
poke32 reftable-overflow.qcow2 $H_RT_CLUSTERS 64
poke64 reftable-overflow.qcow2 $H_RT_OFF 0x7fffffffffff0000
refuse_open reftable-overflow.qcow2 'refcount table offset 0x7fffffffffff0000'
fresh reftable-over-header.qcow2
poke64 reftable-over-header.qcow2 $H_RT_OFF 0
refuse_open reftable-over-header.qcow2 'refcount table at 0x0 .* overlaps the header'

fresh snapshots-many.qcow2
poke32 snapshots-many.qcow2 $H_NB_SNAP 70000
poke64 snapshots-many.qcow2 $H_SNAP_OFF 0x100000
refuse_open snapshots-many.qcow2 'snapshot table size 70000'
fresh snapshots-unaligned.qcow2
poke32 snapshots-unaligned.qcow2 $H_NB_SNAP 1
poke64 snapshots-unaligned.qcow2 $H_SNAP_OFF 0x100028
refuse_open snapshots-unaligned.qcow2 'snapshot table offset 0x100028 is not cluster aligned'
fresh snapshots-overflow.qcow2
poke32 snapshots-overflow.qcow2 $H_NB_SNAP 2000
poke64 snapshots-overflow.qcow2 $H_SNAP_OFF 0x7fffffffffff0000
refuse_open snapshots-overflow.qcow2 'snapshot table offset 0x7fffffffffff0000'
fresh snapshots-over-l1.qcow2
poke32 snapshots-over-l1.qcow2 $H_NB_SNAP 1
poke64 snapshots-over-l1.qcow2 $H_SNAP_OFF "$L1"
refuse_open snapshots-over-l1.qcow2 'snapshot table at .* overlaps the L1 table'

# ---- header extensions -----------------------------------------------------------------------

# The feature table extension (at 112) claims to run past cluster 0.
fresh ext-too-large.qcow2
poke32 ext-too-large.qcow2 116 0xffffff00
refuse_open ext-too-large.qcow2 'header extension 0x6803f857'
# A bitmaps extension of the wrong size, with the autoclear bit that makes it count.
fresh ext-bitmaps.qcow2
poke ext-bitmaps.qcow2 112 23852875000000100000000000000000
poke64 ext-bitmaps.qcow2 $H_AUTOCLEAR 1
refuse_open ext-bitmaps.qcow2 'bitmaps extension length 16'

# A bitmaps extension of the right size saying there are no bitmaps.
fresh ext-bitmaps-none.qcow2
poke ext-bitmaps-none.qcow2 112 23852875000000180000000000000000000000000000000000000000000f0000
poke64 ext-bitmaps-none.qcow2 $H_AUTOCLEAR 1
refuse_open ext-bitmaps-none.qcow2 'nb_bitmaps 0'

# ---- backing files -------------------------------------------------------------------------------

qemu-img create -q -f raw base.raw 4M
qemu-io -f raw -c 'write -P 0x5a 0 4M' base.raw >/dev/null
qemu-img create -q -f qcow2 -b base.raw -F raw overlay.qcow2 4M
qemu-io -f qcow2 -c 'write -P 0x44 2M 64k' overlay.qcow2 >/dev/null
BOFF=$(peek64 overlay.qcow2 $H_BACKING_OFF)

cp overlay.qcow2 backing-name-long.qcow2
poke32 backing-name-long.qcow2 $H_BACKING_SIZE 2000
refuse_open backing-name-long.qcow2 'backing_file_size 2000'
cp overlay.qcow2 backing-offset-far.qcow2
poke64 backing-offset-far.qcow2 $H_BACKING_OFF 0x20000
refuse_open backing-offset-far.qcow2 'backing_file_offset 0x20000 is beyond cluster 0'
cp overlay.qcow2 backing-offset-header.qcow2
poke64 backing-offset-header.qcow2 $H_BACKING_OFF 16
refuse_open backing-offset-header.qcow2 'backing_file_offset 0x10 is inside'
cp overlay.qcow2 backing-nul.qcow2
poke backing-nul.qcow2 $((BOFF + 2)) 00
refuse_open backing-nul.qcow2 'backing file name contains a NUL'
# No backing format: the end marker where the backing format extension was.
[ "$(peek overlay.qcow2 112 4)" = e2792aca ] || die "overlay.qcow2: no backing format at 112"
cp overlay.qcow2 backing-no-format.qcow2
poke32 backing-no-format.qcow2 112 0
refuse_open backing-no-format.qcow2 'has no recorded format'
# The backing format extension twice (the second where the feature table was).
[ "$(peek overlay.qcow2 128 4)" = 6803f857 ] || die "overlay.qcow2: no feature table at 128"
cp overlay.qcow2 ext-twice.qcow2
poke ext-twice.qcow2 128 "$(peek overlay.qcow2 112 16)"
refuse_open ext-twice.qcow2 'header extension 0xe2792aca'
cp overlay.qcow2 backing-format-long.qcow2
poke32 backing-format-long.qcow2 116 40
refuse_open backing-format-long.qcow2 'backing format extension length 40'
qemu-img create -q -f qcow2 -u -b 'json:{"driver":"file","filename":"/etc/passwd"}' -F raw \
	backing-json.qcow2 4M
refuse_open backing-json.qcow2 'protocol names are not supported'
qemu-img create -q -f qcow2 -u -b 'nbd://localhost/x' -F raw backing-nbd.qcow2 4M
refuse_open backing-nbd.qcow2 'protocol names are not supported'
qemu-img create -q -f qcow2 -u -b missing.qcow2 -F qcow2 backing-missing.qcow2 4M
refuse_chain backing-missing.qcow2 'missing.qcow2'
qemu-img create -q -f qcow2 -u -b base.raw -F vmdk backing-vmdk.qcow2 4M
refuse_chain backing-vmdk.qcow2 "no driver 'vmdk'"
# A raw file presented as qcow2 is never taken for one (no probing either way).
qemu-img create -q -f qcow2 -u -b base.raw -F qcow2 backing-wrong-format.qcow2 4M
refuse_chain backing-wrong-format.qcow2 'magic 0x5a5a5a5a'

# Loops: to itself, through two images, through a symlink's other name.
for i in self a b c; do
	qemu-img create -q -f qcow2 -b base.raw -F raw "loop-$i.qcow2" 4M
done
ln -s loop-c.qcow2 loop-c-link.qcow2
qemu-img rebase -u -b loop-self.qcow2 -F qcow2 loop-self.qcow2
qemu-img rebase -u -b loop-b.qcow2 -F qcow2 loop-a.qcow2
qemu-img rebase -u -b loop-a.qcow2 -F qcow2 loop-b.qcow2
qemu-img rebase -u -b loop-c-link.qcow2 -F qcow2 loop-c.qcow2
for i in self a c; do
	refuse_chain "loop-$i.qcow2" 'already in the chain'
done
# A chain deeper than the limit (64).
qemu-img create -q -f raw deep-0.img 1M
i=1
while [ $i -le 66 ]; do
	fmt=qcow2
	[ $i -eq 1 ] && fmt=raw
	qemu-img create -q -f qcow2 -u -b "deep-$((i - 1)).img" -F $fmt "deep-$i.img" 1M
	i=$((i + 1))
done
refuse_chain deep-66.img 'deeper than 64'

# ---- L1 and L2 entries (refused when read; the rest of the image still serves) -----------------

# A second L2 table for guest 2G+ keeps the first one's data readable.
qemu-img create -q -f qcow2 two-l2.qcow2 3G
qemu-io -f qcow2 -c 'write -P 0x11 0 64k' -c 'write -P 0x66 2G 64k' two-l2.qcow2 >/dev/null
T_L1=$(peek64 two-l2.qcow2 $H_L1_OFF)
T_L2B=$(($(peek64 two-l2.qcow2 $((T_L1 + 32))) & 0x00fffffffffffe00)) # L1[4]: guest 2G
[ "$T_L2B" -ne 0 ] || die "two-l2.qcow2: no L2 table for 2G"
cp two-l2.qcow2 l1-entry-unaligned.qcow2
poke64 l1-entry-unaligned.qcow2 $((T_L1 + 32)) $(((1 << 63) | (T_L2B + 4096)))
refuse_read l1-entry-unaligned.qcow2 'L2 table offset is not cluster aligned' '2G 64k' \
	'read -P 0x11 0 64k'
cp two-l2.qcow2 l1-entry-reserved.qcow2
poke64 l1-entry-reserved.qcow2 $((T_L1 + 32)) $(((1 << 63) | (1 << 60) | T_L2B))
refuse_read l1-entry-reserved.qcow2 'L1 entry has reserved bits set' '2G 64k' \
	'read -P 0x11 0 64k'
cp two-l2.qcow2 l2-past-eof.qcow2
poke64 l2-past-eof.qcow2 $((T_L1 + 32)) $(((1 << 63) | (1 << 30)))
refuse_read l2-past-eof.qcow2 'L2 table at 0x40000000 is past the end of the file' '2G 64k' \
	'read -P 0x11 0 64k'
cp two-l2.qcow2 l2-entry-unaligned.qcow2
poke64 l2-entry-unaligned.qcow2 "$T_L2B" $(((1 << 63) | 0x50200))
refuse_read l2-entry-unaligned.qcow2 'host cluster offset is not cluster aligned' '2G 64k' \
	'read -P 0x11 0 64k'
cp two-l2.qcow2 l2-entry-reserved.qcow2
poke64 l2-entry-reserved.qcow2 "$T_L2B" $(((1 << 63) | (1 << 57) | 0x50000))
refuse_read l2-entry-reserved.qcow2 'L2 entry has reserved bits set' '2G 64k' \
	'read -P 0x11 0 64k'
cp two-l2.qcow2 l2-compressed-copied.qcow2
poke64 l2-compressed-copied.qcow2 "$T_L2B" $(((1 << 63) | (1 << 62) | 0x50000))
refuse_read l2-compressed-copied.qcow2 'compressed cluster has the COPIED flag' '2G 64k' \
	'read -P 0x11 0 64k'

# A zero flag in a version 2 image.
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 4M
qemu-io -f qcow2 -c 'write -P 0x11 0 64k' -c 'write -P 0x22 1M 64k' v2.qcow2 >/dev/null
V_L2=$(($(peek64 v2.qcow2 "$(peek64 v2.qcow2 $H_L1_OFF)") & 0x00fffffffffffe00))
poke64 v2.qcow2 $((V_L2 + 16 * 8)) $(((1 << 63) | $(peek64 v2.qcow2 $((V_L2 + 16 * 8))) | 1))
refuse_read v2.qcow2 'zero cluster in a version 2 image' '1M 64k' 'read -P 0x11 0 64k'

# Extended L2: a subcluster both allocated and zero; allocated without a cluster.
qemu-img create -q -f qcow2 -o extended_l2=on extl2.qcow2 4M
qemu-io -f qcow2 -c 'write -P 0x11 0 64k' -c 'write -P 0x22 1M 64k' extl2.qcow2 >/dev/null
E_L2=$(($(peek64 extl2.qcow2 "$(peek64 extl2.qcow2 $H_L1_OFF)") & 0x00fffffffffffe00))
cp extl2.qcow2 extl2-both.qcow2
poke64 extl2-both.qcow2 $((E_L2 + 16 * 16 + 8)) 0x00000001ffffffff
refuse_read extl2-both.qcow2 'subcluster is both allocated and zero' '1M 64k' \
	'read -P 0x11 0 64k'
cp extl2.qcow2 extl2-no-cluster.qcow2
poke64 extl2-no-cluster.qcow2 $((E_L2 + 16 * 16)) 0
refuse_read extl2-no-cluster.qcow2 'allocated subclusters without a host cluster' '1M 64k' \
	'read -P 0x11 0 64k'

# ---- compressed clusters ---------------------------------------------------------------------------

qemu-img create -q -f raw csrc.raw 4M
qemu-io -f raw -c 'write -P 0x11 0 64k' -c 'write -P 0x22 1M 64k' csrc.raw >/dev/null
qemu-img convert -c -f raw -O qcow2 csrc.raw comp.qcow2
C_L2=$(($(peek64 comp.qcow2 "$(peek64 comp.qcow2 $H_L1_OFF)") & 0x00fffffffffffe00))
C_E16=$(peek64 comp.qcow2 $((C_L2 + 16 * 8)))
[ $((C_E16 >> 62 & 1)) -eq 1 ] || die "comp.qcow2: the cluster at 1M is not compressed"
C_EOF=$(stat -c %s comp.qcow2)
# The descriptor points past the end of the file (64 KiB clusters: offset in bits 0..53).
cp comp.qcow2 comp-past-eof.qcow2
poke64 comp-past-eof.qcow2 $((C_L2 + 16 * 8)) $(((1 << 62) | (C_EOF + (1 << 20))))
refuse_read comp-past-eof.qcow2 'compressed cluster at host offset' '1M 64k' 'read -P 0x11 0 64k'
# ... or starts inside the file and runs 255 sectors past its end.
cp comp.qcow2 comp-runs-past-eof.qcow2
poke64 comp-runs-past-eof.qcow2 $((C_L2 + 16 * 8)) $(((1 << 62) | (255 << 54) | (C_EOF - 100)))
refuse_read comp-runs-past-eof.qcow2 'compressed cluster' '1M 64k' 'read -P 0x11 0 64k'
# ... or at garbage: the header.
cp comp.qcow2 comp-garbage.qcow2
poke64 comp-garbage.qcow2 $((C_L2 + 16 * 8)) $(((1 << 62) | (3 << 54) | 0))
refuse_read comp-garbage.qcow2 'is corrupt' '1M 64k' 'read -P 0x11 0 64k'
# ... or far away: 2 MiB clusters leave 49 bits for the offset, 512-byte
# clusters 61, more than a host offset may have (2^56).
qemu-img convert -c -f raw -O qcow2 -o cluster_size=2M csrc.raw comp2m.qcow2
C2_L2=$(($(peek64 comp2m.qcow2 "$(peek64 comp2m.qcow2 $H_L1_OFF)") & 0x00fffffffffffe00))
poke64 comp2m.qcow2 "$C2_L2" $(((1 << 62) | (1 << 48) | 0x12345))
refuse_read comp2m.qcow2 'compressed cluster' '0 64k' 'read -P 0 3M 64k'
qemu-img convert -c -f raw -O qcow2 -o cluster_size=512 csrc.raw comp512.qcow2
C5_L2=$(($(peek64 comp512.qcow2 "$(peek64 comp512.qcow2 $H_L1_OFF)") & 0x00fffffffffffe00))
[ $(($(peek64 comp512.qcow2 "$C5_L2") >> 62 & 1)) -eq 1 ] || die "comp512.qcow2: not compressed"
poke64 comp512.qcow2 "$C5_L2" $(((1 << 62) | (1 << 57)))
refuse_read comp512.qcow2 'compressed data offset is beyond 2^56' '0 512' 'read -P 0x22 1M 64k'

# ---- what QEMU tolerates, we tolerate alike -----------------------------------------------------

# Read as QEMU reads it: qemu-img convert succeeds, and so must we, alike.
tolerated() { # image
	qemu-img convert -f qcow2 -O raw "$1" ref.raw || die "$1: qemu-img refuses it"
	$TAPIMG convert -f qcow2 "$1" out.raw || die "$1: convert failed"
	cmp ref.raw out.raw || die "$1: convert differs from qemu-img convert"
}

# A data cluster past the end of the file reads zeros in QEMU: the same here.
fresh data-past-eof.qcow2
poke64 data-past-eof.qcow2 $((L2 + 16 * 8)) $(((1 << 63) | (FILE_BYTES + (1 << 20)) / 65536 * 65536))
tolerated data-past-eof.qcow2
# An L1 table past the end of the file reads as zeros, so does the image.
fresh l1-past-eof.qcow2
poke64 l1-past-eof.qcow2 $H_L1_OFF 0x400000
tolerated l1-past-eof.qcow2
# An L1 entry naming the refcount table as an L2 table: its entries (refcount
# block offsets) become data clusters.  Nonsense, served as QEMU serves it.
fresh l2-is-reftable.qcow2
poke64 l2-is-reftable.qcow2 "$L1" $(((1 << 63) | $(peek64 good.qcow2 $H_RT_OFF)))
tolerated l2-is-reftable.qcow2
# An L2 entry with only COPIED set: offset 0 without a data file is unallocated.
fresh l2-copied-zero.qcow2
poke64 l2-copied-zero.qcow2 "$L2" $((1 << 63))
tolerated l2-copied-zero.qcow2
# A snapshot table past the end of the file: QEMU reads it as zeros.
fresh snapshots-past-eof.qcow2
poke32 snapshots-past-eof.qcow2 $H_NB_SNAP 1
poke64 snapshots-past-eof.qcow2 $H_SNAP_OFF 0x400000
$TAPIMG io -f qcow2 -r -c 'read -P 0x11 0 64k' snapshots-past-eof.qcow2 >/dev/null ||
	die "snapshot table past EOF: the active image no longer reads"

# ---- unsupported but well-formed: refused cleanly ---------------------------------------------

qemu-img create -q -f qcow2 -o data_file=data.raw datafile.qcow2 4M
refuse_open datafile.qcow2 'external data file'

# ---- and a good image still reads, in the same run -------------------------------------------------
$TAPIMG io -f qcow2 -r -c 'read -P 0x11 0 64k' -c 'read -P 0x22 1M 64k' -c 'read -P 0x33 3M 64k' \
	good.qcow2 >/dev/null || die "the good image no longer reads"
qemu-img convert -f qcow2 -O raw good.qcow2 ref.raw
$TAPIMG convert -f qcow2 good.qcow2 out.raw || die "convert of the good image failed"
cmp ref.raw out.raw || die "convert of the good image differs"
qemu-img check -q good.qcow2 || die "good.qcow2 was damaged"

echo "$count hostile images refused"
exit 0
