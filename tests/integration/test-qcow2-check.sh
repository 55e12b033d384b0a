#!/bin/bash
# SPDX-License-Identifier: MIT
#
# tap-img check against qemu-img check.
#
#  1. A zoo of images made by qemu-img and qemu-io (v2/v3, cluster sizes
#     512 B..2 MiB, refcount widths 1..64, extended L2, compressed
#     clusters, zero clusters, snapshots, bitmaps, external data file,
#     LUKS, backing files): the same JSON, the same exit code and the same
#     messages as qemu-img check.
#  2. Damaged copies (bytes edited with dd): the same exit code, JSON and
#     messages for the check and for each repair mode (qemu-img repairs one
#     copy, tap-img another); after a repair that QEMU completes, both
#     copies are byte for byte the same, qemu-img check finds ours clean
#     and qemu-img compare finds the data of the undamaged original.
#  3. A dirty lazy-refcounts image (qemu-io killed after writes) repaired by
#     tap-img check -r all: clean, dirty bit gone, data intact.
#
# Each comparison runs both tools on copies with the same name in two
# directories, so that the "filename" keys match too.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io jq od dd cmp
set +e # exit codes are what this test compares

Z=$(mktmp zoo)
T=$(mktmp tap)
Q=$(mktmp qemu)
mkdir -p "$Z" "$T" "$Q"
SECRET="secret,id=s0,data=qtap-check"
failures=0

fail() {
	echo "FAIL: $*" >&2
	failures=$((failures + 1))
}

# ---- byte editing -------------------------------------------------------------

rd64() { # FILE OFFSET -> value (bash arithmetic, may be negative)
	echo $((0x$(od -An -v -t x1 -j "$2" -N 8 "$1" | tr -d ' \n')))
}

rd16() {
	echo $((0x$(od -An -v -t x1 -j "$2" -N 2 "$1" | tr -d ' \n')))
}

wrbe() { # FILE OFFSET VALUE BYTES: write VALUE big-endian
	local s="" i
	for ((i = $4 - 1; i >= 0; i--)); do
		s="$s\\$(printf '%03o' $((($3 >> (i * 8)) & 255)))"
	done
	printf "$s" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

wr64() { wrbe "$1" "$2" "$3" 8; }
wr16() { wrbe "$1" "$2" "$3" 2; }

OFFSET_MASK=$((0x00fffffffffffe00))
COPIED=$((1 << 63))

l1_off() { rd64 "$1" 40; }
rt_off() { rd64 "$1" 48; }
l2_off() { echo $(($(rd64 "$1" "$(l1_off "$1")") & OFFSET_MASK)); }
# Offset of L2 entry $2 of the first L2 table (standard entries).
l2e_at() { echo $(($(l2_off "$1") + 8 * $2)); }
# Offset of the 16-bit refcount of cluster $2 (first refcount block).
rc_at() { echo $(($(rd64 "$1" "$(rt_off "$1")") + 2 * $2)); }

# ---- comparing the tools ------------------------------------------------------------

# Lines a tool printed on stderr, without its program prefix.
norm_err() {
	sed -e 's/^qemu-img: //' -e 's/^tap-img: check: //' "$1"
}

# run_both NAME [ARGS...]: check copies of $Z/NAME with both tools.
# Under valgrind only the JSON runs go under it: the human ones take the
# same paths to the same result, and natively they keep the test in budget.
run_both() {
	local name=$1 tapimg=$TAPIMG
	shift
	[ -n "$VG" ] && [[ " $* " != *" --output=json "* ]] && tapimg=$BIN/tap-img
	cp "$Z/$name" "$T/$name"
	cp "$Z/$name" "$Q/$name"
	(cd "$T" && $tapimg check "$@" "$name" >"$name.out" 2>"$name.err")
	echo $? >"$T/$name.rc"
	(cd "$Q" && qemu-img check "$@" "$name" >"$name.out" 2>"$name.err")
	echo $? >"$Q/$name.rc"
}

# same NAME WHAT: both runs gave the same exit code, stdout and stderr.
same() {
	local name=$1 what=$2 trc qrc
	trc=$(cat "$T/$name.rc")
	qrc=$(cat "$Q/$name.rc")
	[ "$trc" = "$qrc" ] || fail "$name ($what): exit $trc, qemu-img exits $qrc"
	if grep -q '^{' "$Q/$name.out"; then
		cmp -s <(jq -S "${JQ_FILTER:-.}" "$T/$name.out") \
			<(jq -S "${JQ_FILTER:-.}" "$Q/$name.out") ||
			fail "$name ($what): JSON differs: $(cat "$T/$name.out") qemu-img: $(cat "$Q/$name.out")"
	else
		cmp -s "$T/$name.out" "$Q/$name.out" ||
			fail "$name ($what): output differs: $(diff "$T/$name.out" "$Q/$name.out")"
	fi
	cmp -s <(norm_err "$T/$name.err") <(norm_err "$Q/$name.err") ||
		fail "$name ($what): messages differ: $(diff <(norm_err "$T/$name.err") <(norm_err "$Q/$name.err") | head -20)"
}

# expect_rc NAME RC: the check of the undamaged/damaged image exits RC.
expect_rc() {
	local rc
	rc=$(cat "$Q/$1.rc")
	[ "$rc" = "$2" ] || fail "$1: qemu-img check exits $rc, the test expected $2"
}

# check_zoo NAME: JSON and human output as qemu-img's.
check_zoo() {
	run_both "$1" --output=json
	same "$1" json
	expect_rc "$1" 0
	run_both "$1"
	same "$1" human
}

# repair_both NAME MODE ORIG: -r MODE with both tools, same results; when
# qemu-img's repair leaves the image clean, so must ours, with ORIG's data.
# Images in $BETTER are ones QEMU's -r all cannot repair (its rebuild
# refuses to write over a refcount block the table points to with reserved
# bits); ours goes around that block, and must leave them clean.
BETTER=" reserved-rt.qcow2 "
repair_both() {
	local name=$1 mode=$2 orig=$3 rc
	run_both "$name" -r "$mode" --output=json
	if [ "$mode" = all ] && [ "${BETTER#* $name }" != "$BETTER" ]; then
		[ "$(cat "$Q/$name.rc")" = 1 ] || fail "$name: qemu-img check -r all now repairs it"
		[ "$(cat "$T/$name.rc")" = 0 ] || fail "$name: tap-img check -r all: $(cat "$T/$name.err")"
	else
		same "$name" "-r $mode"
		rc=$(cat "$Q/$name.rc")
		[ "$rc" = 0 ] || return 0
		# the same repair, down to where the new refcount structure went
		cmp -s "$T/$name" "$Q/$name" ||
			fail "$name: -r $mode: repaired files differ: $(cmp "$T/$name" "$Q/$name")"
	fi
	qemu-img check "$T/$name" >/dev/null 2>&1 ||
		fail "$name: qemu-img check after tap-img check -r $mode: exit $?"
	qemu-img compare -q "$Z/$orig" "$T/$name" ||
		fail "$name: data differs from $orig after tap-img check -r $mode"
}

# ---- the zoo -------------------------------------------------------------------------

mk() { # NAME CREATE-OPTIONS SIZE [qemu-io commands...]
	local name=$1 opts=$2 size=$3
	shift 3
	qemu-img create -q -f qcow2 ${opts:+-o "$opts"} "$Z/$name" "$size" ||
		die "qemu-img create $name ($opts)"
	if [ $# -gt 0 ]; then
		qemu-io -f qcow2 "$@" "$Z/$name" >/dev/null || die "qemu-io on $name"
	fi
}

# Writes leaving holes, so that allocation is fragmented.
W=(-c 'write -P 0x11 0 192k' -c 'write -P 0x22 1M 64k' -c 'write -P 0x33 96k 8k'
	-c 'write -P 0x44 3M 100k' -c 'write -z 1M 32k' -c 'write -P 0x55 5M 4k')

mk v2.qcow2 compat=0.10 8M "${W[@]}"
qemu-img snapshot -c s1 "$Z/v2.qcow2"
qemu-io -c 'write -P 0x66 0 64k' "$Z/v2.qcow2" >/dev/null
mk v3.qcow2 "" 8M "${W[@]}"
mk c512.qcow2 cluster_size=512 8M "${W[@]}"
mk c4k.qcow2 cluster_size=4k 8M "${W[@]}"
mk c2m.qcow2 cluster_size=2M 16M "${W[@]}"
mk empty.qcow2 "" 1G
mk tiny.qcow2 cluster_size=4k 12345 -c 'write -P 1 0 8k'
for bits in 1 2 4 8 16 32 64; do
	mk "rb$bits.qcow2" "refcount_bits=$bits" 8M "${W[@]}"
done
for bits in 2 8 64; do
	qemu-img snapshot -c snap "$Z/rb$bits.qcow2"
	qemu-io -c 'write -P 0x77 32k 8k' "$Z/rb$bits.qcow2" >/dev/null
done
mk extl2.qcow2 extended_l2=on,cluster_size=64k 8M -c 'write -P 1 4k 4k' \
	-c 'write -z 64k 8k' -c 'write -z 128k 64k' -c 'write -P 2 300k 12k' \
	-c 'write -z -u 4k 2k' -c 'discard 128k 64k'
mk extl2-2m.qcow2 extended_l2=on,cluster_size=2M 16M -c 'write -P 1 0 64k' \
	-c 'write -P 2 3M 64k' -c 'write -z 5M 128k'
mk zero.qcow2 "" 8M -c 'write -P 1 0 1M' -c 'write -z 64k 128k' -c 'write -z -u 512k 128k' \
	-c 'write -z 2M 64k' -c 'discard 768k 64k'
mk prealloc.qcow2 preallocation=metadata 4M -c 'write -P 9 0 64k' -c 'write -z 128k 192k'
mk lazy.qcow2 lazy_refcounts=on 8M "${W[@]}"

# compressed clusters: a whole image through convert -c, and some clusters
# written compressed into an otherwise normal image
head -c 3M /dev/urandom >"$Z/random.bin"
qemu-img create -q -f raw "$Z/src.raw" 8M
qemu-io -f raw -c 'write -P 0x5a 0 2M' -c 'write -P 0 2M 1M' -c 'write -P 0x11 6M 64k' \
	"$Z/src.raw" >/dev/null
dd if="$Z/random.bin" of="$Z/src.raw" bs=64k seek=40 count=16 conv=notrunc status=none
qemu-img convert -c -O qcow2 "$Z/src.raw" "$Z/comp.qcow2"
qemu-img convert -c -O qcow2 -o compression_type=zstd "$Z/src.raw" "$Z/zstd.qcow2"
qemu-img convert -c -O qcow2 -o cluster_size=4k,refcount_bits=1 "$Z/src.raw" "$Z/comp-rb1.qcow2"
qemu-img convert -c -O qcow2 -o extended_l2=on "$Z/src.raw" "$Z/comp-extl2.qcow2"
qemu-img convert -c -O qcow2 -o compat=0.10 "$Z/src.raw" "$Z/comp-v2.qcow2"
mk mixed.qcow2 "" 8M -c 'write -c -P 0x61 0 128k' -c 'write -P 0x62 128k 64k' \
	-c 'write -c -P 0x63 1M 64k' -c 'write -P 0x64 64k 4k'

# internal snapshots, shared clusters, a deleted snapshot
mk snaps.qcow2 "" 8M "${W[@]}"
for s in 1 2 3; do
	qemu-img snapshot -c "s$s" "$Z/snaps.qcow2"
	qemu-io -c "write -P 0x7$s $((s * 128))k 64k" -c "write -z $((s * 1024))k 64k" \
		"$Z/snaps.qcow2" >/dev/null
done
qemu-img snapshot -d s2 "$Z/snaps.qcow2"

# persistent bitmaps (stored with data clusters when qemu-io closes)
mk bitmaps.qcow2 "" 8M
qemu-img bitmap --add "$Z/bitmaps.qcow2" b0
qemu-img bitmap --add -g 128k --disable "$Z/bitmaps.qcow2" b1
qemu-io -c 'write -P 1 0 1M' -c 'write -P 2 4M 64k' "$Z/bitmaps.qcow2" >/dev/null
qemu-img bitmap --add -g 4k "$Z/bitmaps.qcow2" b2
qemu-img bitmap --merge b0 "$Z/bitmaps.qcow2" b2

# external data file (data clusters are not refcounted) and LUKS
mk datafile.qcow2 "data_file=$Z/datafile.raw" 8M "${W[@]}"
# (a short iter-time keeps it quick; qemu-img fails it when it cannot time
# the key derivation on a loaded machine, hence the retry)
for try in 1 2 3 4; do
	qemu-img create -q -f qcow2 --object "$SECRET" \
		-o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=$((try * try * 500)) \
		"$Z/luks.qcow2" 8M 2>/dev/null && break
	rm -f "$Z/luks.qcow2"
done
[ -f "$Z/luks.qcow2" ] ||
	echo "NOTE: qemu-img could not time its LUKS key derivation here; LUKS image left out"

# backing file
mk base.qcow2 "" 8M -c 'write -P 1 0 4M'
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$Z/overlay.qcow2" 8M
qemu-io -c 'write -P 2 1M 64k' -c 'write -z 2M 64k' "$Z/overlay.qcow2" >/dev/null

for img in v2 v3 c512 c4k c2m empty tiny rb1 rb2 rb4 rb8 rb16 rb32 rb64 extl2 extl2-2m \
	zero prealloc lazy comp zstd comp-rb1 comp-extl2 comp-v2 mixed snaps bitmaps \
	datafile overlay; do
	[ "$img" = datafile ] && cp "$Z/datafile.raw" "$T/" && cp "$Z/datafile.raw" "$Q/"
	[ "$img" = overlay ] && cp "$Z/base.qcow2" "$T/" && cp "$Z/base.qcow2" "$Q/"
	check_zoo "$img.qcow2"
done

# qemu-img needs the key to open a LUKS image; tap-img checks metadata only.
if [ -f "$Z/luks.qcow2" ]; then
	cp "$Z/luks.qcow2" "$T/"
	(cd "$T" && $TAPIMG check --output=json luks.qcow2 >luks.qcow2.out) ||
		fail "luks: tap-img check"
	qemu-img check --object "$SECRET" --output=json \
		--image-opts "driver=qcow2,file.filename=$Z/luks.qcow2,encrypt.key-secret=s0" \
		>"$Q/luks.qcow2.out" || fail "luks: qemu-img check"
	cmp -s <(jq -S 'del(.filename)' "$T/luks.qcow2.out") \
		<(jq -S 'del(.filename)' "$Q/luks.qcow2.out") || fail "luks: JSON differs"
fi

# ---- damaged images -----------------------------------------------------------------

# The base of most damages: 64 KiB clusters, header, reftable (1),
# refblock (2), L1 (3), L2 (4), data from cluster 5 on.
mk good.qcow2 "" 8M -c 'write -P 0x1 0 256k' -c 'write -P 0x2 1M 64k' -c 'write -z 2M 64k'
qemu-io -c 'discard 128k 64k' "$Z/good.qcow2" >/dev/null # a free cluster inside the file
damage() { # NAME: a copy of good.qcow2 to edit
	cp "$Z/good.qcow2" "$Z/$1"
	echo "$Z/$1"
}
data0=$(($(rd64 "$Z/good.qcow2" "$(l2e_at "$Z/good.qcow2" 0)") & OFFSET_MASK))

# a leaked cluster: the freed one gets refcount 1 again
f=$(damage leak.qcow2)
for c in $(seq 5 20); do # the first cluster with refcount 0 inside the file
	if [ "$(rd16 "$f" "$(rc_at "$f" "$c")")" = 0 ] && [ $((c * 65536)) -lt "$(stat -c %s "$f")" ]; then
		wr16 "$f" "$(rc_at "$f" "$c")" 1
		break
	fi
done
# a refcount raised on a used cluster (leak, and COPIED now wrong)
f=$(damage leak-used.qcow2)
wr16 "$f" "$(rc_at "$f" $((data0 >> 16)))" 2
# a refcount too low, and zero, for a used cluster
f=$(damage rc-zero.qcow2)
wr16 "$f" "$(rc_at "$f" $((data0 >> 16)))" 0
f=$(damage rc-zero-l2.qcow2)
wr16 "$f" "$(rc_at "$f" $(($(l2_off "$f") >> 16)))" 0
cp "$Z/snaps.qcow2" "$Z/rc-low.qcow2"
f=$Z/rc-low.qcow2
data_snap=$(($(rd64 "$f" "$(l2e_at "$f" 0)") & OFFSET_MASK))
wr16 "$f" "$(rc_at "$f" $((data_snap >> 16)))" 1
# wrong COPIED flags: cleared on a data cluster, set on an L1 entry of a shared table
f=$(damage copied.qcow2)
e=$(rd64 "$f" "$(l2e_at "$f" 0)")
wr64 "$f" "$(l2e_at "$f" 0)" $((e & ~COPIED))
cp "$Z/snaps.qcow2" "$Z/copied-l1.qcow2"
f=$Z/copied-l1.qcow2
l1e=$(rd64 "$f" "$(l1_off "$f")")
wr64 "$f" "$(l1_off "$f")" $((l1e ^ COPIED))
# an L2 entry pointing past the end of the file
f=$(damage past-eof.qcow2)
wr64 "$f" "$(l2e_at "$f" 2)" $((COPIED | 0x40000000))
# unaligned offsets: a data cluster, an L2 table, a preallocated zero cluster
f=$(damage unaligned.qcow2)
e=$(rd64 "$f" "$(l2e_at "$f" 1)")
wr64 "$f" "$(l2e_at "$f" 1)" $((e + 0x200))
f=$(damage unaligned-l2.qcow2)
wr64 "$f" "$(l1_off "$f")" $(($(rd64 "$f" "$(l1_off "$f")") + 0x400))
cp "$Z/prealloc.qcow2" "$Z/unaligned-zero.qcow2"
f=$Z/unaligned-zero.qcow2
e=$(rd64 "$f" "$(l2e_at "$f" 2)") # a preallocated zero cluster (write -z 128k)
[ $((e & 1)) = 1 ] || die "prealloc.qcow2: L2 entry 2 is not a zero cluster ($e)"
wr64 "$f" "$(l2e_at "$f" 2)" $((e + 0x800))
# reserved bits: in an L2 entry, an L1 entry, a refcount table entry
f=$(damage reserved-l2.qcow2)
e=$(rd64 "$f" "$(l2e_at "$f" 0)")
wr64 "$f" "$(l2e_at "$f" 0)" $((e | 0x2))
f=$(damage reserved-l1.qcow2)
wr64 "$f" "$(l1_off "$f")" $(($(rd64 "$f" "$(l1_off "$f")") | (1 << 56)))
f=$(damage reserved-rt.qcow2)
wr64 "$f" "$(rt_off "$f")" $(($(rd64 "$f" "$(rt_off "$f")") | 1))
# a v3 snapshot table entry with less than 16 bytes of extra data (the
# last entry of snaps.qcow2: s1 then s3, the first 72 bytes long); -r all
# rewrites the table
cp "$Z/snaps.qcow2" "$Z/sn-incomplete.qcow2"
f=$Z/sn-incomplete.qcow2
sn=$(rd64 "$f" 64)
[ "$(rd16 "$f" $((sn + 72 + 12)))" = 1 ] || die "snaps.qcow2: unexpected snapshot table layout"
wrbe "$f" $((sn + 72 + 36)) 8 4
# a compressed cluster with COPIED
cp "$Z/comp.qcow2" "$Z/comp-copied.qcow2"
f=$Z/comp-copied.qcow2
e=$(rd64 "$f" "$(l2e_at "$f" 0)")
wr64 "$f" "$(l2e_at "$f" 0)" $((e | COPIED))
# a refcount block outside the image (grown to hold it by -r all)
f=$(damage rb-outside.qcow2)
wr64 "$f" $(($(rt_off "$f") + 8)) $((0x4000000))
# a shared refcount block (two table entries point to it)
f=$(damage rb-shared.qcow2)
wr64 "$f" $(($(rt_off "$f") + 8)) "$(rd64 "$f" "$(rt_off "$f")")"

# name, expected exit code of the check, then what the repairs must give
for d in leak:3 leak-used:2 rc-zero:2 rc-zero-l2:2 rc-low:2 copied:2 copied-l1:2 past-eof:2 \
	unaligned:2 unaligned-l2:2 unaligned-zero:2 reserved-l2:2 reserved-l1:2 reserved-rt:2 \
	comp-copied:2 rb-outside:2 rb-shared:2 sn-incomplete:2; do
	name=${d%%:*}.qcow2
	orig=good.qcow2
	case $name in rc-low* | copied-l1* | sn-*) orig=snaps.qcow2 ;; unaligned-zero*) orig=prealloc.qcow2 ;;
	comp-*) orig=comp.qcow2 ;; esac
	run_both "$name" --output=json
	same "$name" check
	expect_rc "$name" "${d#*:}"
	run_both "$name"
	same "$name" human
	repair_both "$name" leaks "$orig"
	repair_both "$name" all "$orig"
done

# A repair clears the autoclear bits it does not know and keeps the
# snapshots.  (qemu-img 7.2 drops them here: its check rewrites the header
# with the snapshot count it has not read yet.)
cp "$Z/snaps.qcow2" "$T/autoclear.qcow2"
wr64 "$T/autoclear.qcow2" 88 $((1 << 9))
$TAPIMG check -r leaks "$T/autoclear.qcow2" >/dev/null || fail "autoclear: repair failed"
[ "$(rd64 "$T/autoclear.qcow2" 88)" = 0 ] || fail "autoclear: unknown bit still set"
qemu-img snapshot -l "$T/autoclear.qcow2" | grep -q ' s3 ' || fail "autoclear: snapshots lost"
qemu-img check "$T/autoclear.qcow2" >/dev/null || fail "autoclear: not clean"

# The human report of a repair, and of the second check after it.
run_both leak.qcow2 -r leaks
same leak.qcow2 "-r leaks, human"
grep -q '^Double checking the fixed image now' "$T/leak.qcow2.out" || fail "leak: no second check"
run_both rc-zero.qcow2 -r all
same rc-zero.qcow2 "-r all, human"

# The repairs QEMU completes, ours must complete too (exit 0 after -r all).
for name in leak leak-used rc-zero rc-zero-l2 rc-low copied copied-l1 unaligned-zero \
	reserved-rt rb-outside rb-shared sn-incomplete; do
	[ "$(cat "$T/$name.qcow2.rc")" = 0 ] || fail "$name: tap-img check -r all did not repair it"
done

# ---- a dirty lazy-refcounts image ---------------------------------------------------------

mk dirty.qcow2 lazy_refcounts=on 8M -c 'write -P 0xab 0 64k'
# (through bash -c, whose report of the kill goes to /dev/null)
bash -c 'qemu-io -c "write -P 0xcd 1M 1M" -c "write -P 0xef 4M 192k" -c "sigraise 9" "$1"; exit $?' \
	_ "$Z/dirty.qcow2" >/dev/null 2>&1 && die "qemu-io was not killed"
[ $(($(rd64 "$Z/dirty.qcow2" 72) & 1)) = 1 ] || die "dirty.qcow2: the dirty bit is not set"
run_both dirty.qcow2 --output=json
same dirty.qcow2 check
expect_rc dirty.qcow2 2
repair_both dirty.qcow2 all dirty.qcow2
[ "$(cat "$T/dirty.qcow2.rc")" = 0 ] || fail "dirty: tap-img check -r all did not repair it"
[ $(($(rd64 "$T/dirty.qcow2" 72) & 1)) = 0 ] || fail "dirty: the dirty bit is still set"
qemu-io -r -c 'read -P 0xab 0 64k' -c 'read -P 0xcd 1M 1M' -c 'read -P 0xef 4M 192k' \
	"$T/dirty.qcow2" | grep -q 'Pattern verification failed' && fail "dirty: data lost"

# ---- the command line ----------------------------------------------------------------------

qemu-img create -q -f raw "$T/disk.raw" 1M
$TAPIMG check "$T/disk.raw" 2>"$T/raw.err"
rc=$?
[ $rc = 63 ] || fail "raw image: exit $rc, not 63"
grep -q 'This image format does not support checks' "$T/raw.err" || fail "raw: $(cat "$T/raw.err")"
$TAPIMG check -f raw "$Z/v3.qcow2" 2>/dev/null
[ $? = 63 ] || fail "-f raw on a qcow2 file: not 63"
$TAPIMG check "qcow2:$Z/v3.qcow2" >/dev/null || fail "qcow2:PATH spec"
$TAPIMG check -f qcow2 "$T/disk.raw" 2>/dev/null
[ $? = 1 ] || fail "-f qcow2 on a raw file: not 1"
$TAPIMG check "$T/missing.qcow2" 2>/dev/null
[ $? = 1 ] || fail "missing file: not 1"
$TAPIMG check -r bogus "$Z/v3.qcow2" 2>/dev/null
[ $? = 1 ] || fail "-r bogus: not 1"
$TAPIMG check --output=xml "$Z/v3.qcow2" 2>/dev/null
[ $? = 1 ] || fail "--output=xml: not 1"
$TAPIMG check -U -r leaks "$Z/v3.qcow2" 2>/dev/null
[ $? = 1 ] || fail "-U with -r: not 1"
out=$($TAPIMG check -q "$Z/v3.qcow2")
[ $? = 0 ] && [ -z "$out" ] || fail "-q printed '$out'"
out=$($TAPIMG check -q "$Z/leak.qcow2" 2>/dev/null)
[ $? = 3 ] && [ -z "$out" ] || fail "-q on a leaky image"

# An image another process writes is refused (QEMU's locks), unless -U for
# a read-only check; one QEMU only reads is refused a repair.
if command -v qemu-nbd >/dev/null 2>&1; then
	cp "$Z/v3.qcow2" "$T/busy.qcow2"
	qemu-nbd -f qcow2 --persistent -k "$T/nbd.sock" "$T/busy.qcow2" &
	nbd_pid=$!
	on_exit "kill $nbd_pid 2>/dev/null"
	wait_for_path "$T/nbd.sock" || die "qemu-nbd did not start"
	$TAPIMG check "$T/busy.qcow2" >/dev/null 2>"$T/busy.err"
	[ $? = 1 ] || fail "check of an image in use: not refused"
	grep -q 'Failed to get shared "write" lock' "$T/busy.err" || fail "busy: $(cat "$T/busy.err")"
	$TAPIMG check -U "$T/busy.qcow2" >/dev/null || fail "check -U of an image in use"
	$TAPIMG check -r all "$T/busy.qcow2" >/dev/null 2>&1
	[ $? = 1 ] || fail "repair of an image in use: not refused"
	kill $nbd_pid
	wait $nbd_pid 2>/dev/null
	qemu-nbd -r -f qcow2 --persistent -k "$T/nbd-ro.sock" "$T/busy.qcow2" &
	nbd_pid=$!
	on_exit "kill $nbd_pid 2>/dev/null"
	wait_for_path "$T/nbd-ro.sock" || die "qemu-nbd -r did not start"
	$TAPIMG check "$T/busy.qcow2" >/dev/null || fail "read-only check beside a reader"
	$TAPIMG check -r leaks "$T/busy.qcow2" >/dev/null 2>&1
	[ $? = 1 ] || fail "repair of an image a reader holds: not refused"
	kill $nbd_pid
	wait $nbd_pid 2>/dev/null
fi

[ "$failures" = 0 ] || die "$failures comparisons failed"
exit 0
