#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img convert -r and commit -r limit the copy as qemu-img's do: 6 MiB
# of data at 2 MiB/s take about as long as with qemu-img (convert: ~2 s,
# the first chunk being free; commit: ~2 s for 4 MiB), zeros cost
# nothing, the copies read the same and pass qemu-img check, and bad
# rates fail with qemu-img's messages.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io

cd "$TEST_DIR"
qemu-img create -q -f raw d.raw 12M
qemu-io -f raw -c 'write -P 1 0 6M' d.raw >/dev/null

now_ms() { date +%s%3N; }

# elapsed ms of "$@"
timed() {
	t0=$(now_ms)
	"$@" || die "$* failed"
	echo $(($(now_ms) - t0))
}

# under valgrind, tap-img starts seconds later: only the lower bounds hold
slack=0
[ -z "$VG" ] || slack=30000

# within [lo, hi] ms, and within 700 ms of qemu-img's
check_time() {
	what=$1 t=$2 q=$3 lo=$4 hi=$5
	[ "$t" -ge "$lo" ] && [ "$t" -le $((hi + slack)) ] ||
		die "$what: $t ms, want $lo..$hi (qemu-img $q ms)"
	d=$((t - q))
	[ ${d#-} -le $((700 + slack)) ] || die "$what: $t ms, qemu-img $q ms"
}

q=$(timed qemu-img convert -r 2M -f raw -O qcow2 d.raw q.qcow2)
t=$(timed $TAPIMG convert -r 2M -f raw -O qcow2 d.raw t.qcow2)
check_time "convert -r 2M" "$t" "$q" 1500 3500
qemu-img check -q t.qcow2 || die "convert -r: qemu-img check failed"
qemu-img compare -q q.qcow2 t.qcow2 || die "convert -r: differs from qemu-img's copy"
# without a limit, or with 0, it is quick (so the limit is what took the time)
t=$(timed $TAPIMG convert -r 0 -f raw -O raw d.raw t0.raw)
[ "$t" -lt $((1000 + slack)) ] || die "convert -r 0: $t ms"
cmp d.raw t0.raw || die "convert -r 0: differs"
# zeros are free: a 12M image with nothing in it
qemu-img create -q -f raw z.raw 12M
t=$(timed $TAPIMG convert -r 1M -f raw -O raw z.raw tz.raw)
[ "$t" -lt $((1000 + slack)) ] || die "convert -r of zeros: $t ms"

for tool in qemu-img tap-img; do
	rm -f base.qcow2 top.qcow2
	qemu-img create -q -f qcow2 base.qcow2 12M
	qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
	qemu-io -f qcow2 -c 'write -P 7 0 4M' top.qcow2 >/dev/null
	if [ $tool = qemu-img ]; then
		ms=$(timed qemu-img commit -q -r 2M top.qcow2)
	else
		ms=$(timed $TAPIMG commit -q -r 2M top.qcow2)
	fi
	qemu-img check -q base.qcow2 || die "$tool commit -r: qemu-img check failed"
	qemu-io -f qcow2 -c 'read -P 7 0 4M' base.qcow2 | grep -q 'read 4194304' ||
		die "$tool commit -r: the data is not in the base"
	if [ "$tool" = qemu-img ]; then q=$ms; else t=$ms; fi
done
check_time "commit -r 2M" "$t" "$q" 1500 3500

fails() {
	verb=$1 msg=$2
	shift 2
	set +e
	qemu-img "$verb" "$@" >/dev/null 2>q.err
	qrc=$?
	$TAPIMG "$verb" "$@" >/dev/null 2>t.err
	trc=$?
	set -e
	[ $qrc -eq 1 ] && [ $trc -eq 1 ] || die "$verb $*: exit $trc, qemu-img $qrc"
	grep -qF -- "$msg" q.err || die "qemu-img $verb $*: $(cat q.err): the test is stale"
	[ "$(sed 's/^qemu-img: //' q.err)" = "$(sed "s/^tap-img: $verb: //" t.err)" ] ||
		die "$verb $*: '$(cat t.err)', qemu-img '$(cat q.err)'"
}
for r in abc -5 1x; do
	fails convert "You may use k, M, G, T, P or E suffixes" -r "$r" -f raw -O raw d.raw x.raw
	fails commit "You may use k, M, G, T, P or E suffixes" -r "$r" top.qcow2
done
for r in 99999999999999999999 9223372036854775808; do
	fails convert "Must be between 0 and 9223372036854775807." -r "$r" -f raw -O raw d.raw x.raw
	fails commit "Must be between 0 and 9223372036854775807." -r "$r" top.qcow2
done
echo "convert -r, commit -r: as qemu-img"
