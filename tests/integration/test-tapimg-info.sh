#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img info prints what qemu-img info prints, for a zoo of images made by
# qemu-img: raw, qcow2 v2 and v3 with every create option, internal
# snapshots (unicode names), persistent bitmaps (enabled, disabled, other
# granularities), dirty and corrupt images, an external data file, and
# backing chains with relative, absolute, missing, format-less and looping
# backing files.  The JSON is compared as data (jq -S) and as text, the
# human output as text; errors exit 1 both ways.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io jq

cd "$TEST_DIR"
mkdir -p sub/deeper

# zoo
qemu-img create -q -f raw raw.img 10M
qemu-img create -q -f raw odd.raw 1000
qemu-img create -q -f qcow2 plain.qcow2 1M
qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=4k v2.qcow2 5M
qemu-img create -q -f qcow2 -o extended_l2=on,compression_type=zstd,lazy_refcounts=on,refcount_bits=64 \
	features.qcow2 20M
qemu-img create -q -f qcow2 -o preallocation=metadata,cluster_size=512 prealloc.qcow2 1M
qemu-img snapshot -c first features.qcow2
qemu-io -c 'write -P 0x11 0 64k' features.qcow2 >/dev/null
qemu-img snapshot -c "snäp ☃ 𝄞 \"quoted\"" features.qcow2
qemu-img snapshot -c old v2.qcow2
qemu-img bitmap --add features.qcow2 enabled
qemu-img bitmap --add -g 128k features.qcow2 coarse
qemu-img bitmap --disable features.qcow2 coarse
qemu-img bitmap --add -g 512 plain.qcow2 fine
qemu-img create -q -f qcow2 -o data_file=data.raw,data_file_raw=on datafile.qcow2 1M
qemu-img create -q -f qcow2 flags.qcow2 1M
# incompatible features: dirty and corrupt bits
printf '\000\000\000\000\000\000\000\003' | dd of=flags.qcow2 bs=1 seek=72 conv=notrunc 2>/dev/null

# chains: relative names resolve against the overlay's directory
qemu-img create -q -f raw sub/deeper/base.raw 4M
qemu-img create -q -f qcow2 -b deeper/base.raw -F raw sub/mid.qcow2
qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 -o cluster_size=16k sub/top.qcow2 8M
qemu-img create -q -f qcow2 -b "$PWD/sub/top.qcow2" -F qcow2 abs.qcow2
qemu-img create -q -f qcow2 -u -b nothere.qcow2 -F qcow2 missing.qcow2 1M
qemu-img create -q -f qcow2 loop1.qcow2 1M
qemu-img create -q -f qcow2 -b loop1.qcow2 -F qcow2 loop2.qcow2
qemu-img rebase -u -b loop2.qcow2 -F qcow2 loop1.qcow2
# a backing file without a recorded format (as older qemu-img wrote them):
# turn the backing format extension into one nobody knows
qemu-img create -q -f qcow2 -b plain.qcow2 -F qcow2 noformat.qcow2
off=$(od -A d -t x1 -v noformat.qcow2 | head -n 64 |
	awk '{ for (i = 2; i <= NF; i++) printf "%s ", $i }' |
	awk '{ for (i = 1; i <= NF - 3; i++) if ($i $(i+1) $(i+2) $(i+3) == "e2792aca") { print i - 1; exit } }')
[ -n "$off" ] || die "no backing format extension found in noformat.qcow2"
printf '\125\125\125\125' | dd of=noformat.qcow2 bs=1 seek="$off" conv=notrunc 2>/dev/null
qemu-img info noformat.qcow2 | grep -q 'backing file format' && die "the format is still there"

# compare ARGS...: the same output and exit status from both tools.
compare() {
	set +e
	q=$(qemu-img info "$@" 2>&1)
	qrc=$?
	t=$($TAPIMG info "$@" 2>&1)
	trc=$?
	set -e
	[ $qrc -eq $trc ] || die "info $*: exit $trc, qemu-img $qrc: $t"
	if [ $qrc -ne 0 ]; then
		# the messages differ in the program name only
		[ "$(echo "$q" | sed 's/^qemu-img: //')" = "$(echo "$t" | sed 's/^tap-img: info: //')" ] ||
			die "info $*: message '$t', qemu-img says '$q'"
		return 0
	fi
	case " $* " in
	*" --output=json "*)
		echo "$q" | jq -S . >q.json
		echo "$t" | jq -S . >t.json
		cmp -s q.json t.json || die "info $*: JSON differs: $(diff q.json t.json)"
		;;
	esac
	printf '%s\n' "$q" >q.out
	printf '%s\n' "$t" >t.out
	cmp -s q.out t.out || die "info $*: output differs: $(diff q.out t.out)"
}

for img in raw.img odd.raw plain.qcow2 v2.qcow2 features.qcow2 prealloc.qcow2 datafile.qcow2 \
	flags.qcow2 sub/top.qcow2 abs.qcow2 missing.qcow2 noformat.qcow2 ./sub/mid.qcow2; do
	compare "$img"
	compare --output=json "$img"
	compare --backing-chain "$img"
	compare --backing-chain --output=json "$img"
	compare -U --output=json "$img"
done
compare -f raw --output=json plain.qcow2
compare -f qcow2 --output=json plain.qcow2
compare -f raw sub/top.qcow2
compare -f qcow2 raw.img
compare nothere.qcow2
compare --output=json loop1.qcow2
compare --backing-chain loop1.qcow2
compare --backing-chain --output=json loop2.qcow2

# encrypted images: the LUKS header's fields (format-specific "encrypt"), and
# legacy AES; qemu-img may fail to time its key derivation on a loaded
# machine, and then that image is left out
for spec in "luks luks.qcow2" "luks-essiv essiv.qcow2" "aes aes.qcow2"; do
	set -- $spec
	case $1 in
	luks) o="encrypt.format=luks,encrypt.iter-time=10" ;;
	luks-essiv) o="encrypt.format=luks,encrypt.iter-time=10,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha256,encrypt.cipher-alg=aes-128" ;;
	aes) o="encrypt.format=aes" ;;
	esac
	qemu-img create -q -f qcow2 --object secret,id=s0,data=pw -o "$o,encrypt.key-secret=s0" "$2" 1M \
		>/dev/null 2>&1 || { echo "note: qemu-img could not create $2"; continue; }
	compare "$2"
	compare --output=json "$2"
done

# options qemu-img refuses
out=$($TAPIMG info --output=yaml plain.qcow2 2>&1) && die "--output=yaml accepted"
echo "$out" | grep -q 'output must be used with human or json' || die "bad message: $out"
$TAPIMG info 2>/dev/null && die "info without a file succeeded"
exit 0
