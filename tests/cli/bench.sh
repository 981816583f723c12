#!/usr/bin/env bash
# mirai-bench's command line, and a short run of each workload whose last
# line must be one JSON object with the published keys; the keys added for
# the batched floor, the w4 headline and the result checks must be positive.
# --tls runs of w2 and w4 (wss slots with the dispatcher, tls+tcp without)
# must carry the TLS figures under the same keys and the plain ones of the
# same run under plain_*, all positive, every result checked.
set -u
# A directory of this test's own, also when run alone without TMPDIR.
TMPDIR=$(mktemp -d "${TMPDIR:-/tmp}/cli.XXXXXX") || exit 1
trap 'rm -rf "$TMPDIR"' EXIT
B=${BUILD:-build}/bin
fail() { echo "FAIL: $*"; exit 1; }

"$B/mirai-bench" --help >"$TMPDIR/out" || fail "--help"
grep -q "WORKLOAD" "$TMPDIR/out" || fail "--help text"
for o in --servers --tls --no-dispatcher; do
	grep -q -- "$o" "$TMPDIR/out" || fail "--help does not mention $o"
done
"$B/mirai-bench" w9 2>/dev/null && fail "unknown workload accepted"
[ $? = 2 ] || fail "unknown workload exit code"

# Refusals: exit 2 with a message that says why.
for w in w3 w6; do
	"$B/mirai-bench" $w --tls >/dev/null 2>"$TMPDIR/err"
	[ $? = 2 ] || fail "$w --tls not refused"
	grep -q -- "--tls measures w1, w2 and w4" "$TMPDIR/err" || fail "$w --tls message: $(cat "$TMPDIR/err")"
done
"$B/mirai-bench" w6 --no-dispatcher >/dev/null 2>"$TMPDIR/err"
[ $? = 2 ] || fail "w6 --no-dispatcher not refused"
grep -q "w6 needs the dispatcher" "$TMPDIR/err" || fail "w6 --no-dispatcher message: $(cat "$TMPDIR/err")"

LAST=
check() {  # WORKLOAD KEYS... : short run, check the keys of the last line
	local w=$1
	shift
	"$B/mirai-bench" "$w" $ARGS >"$TMPDIR/b.out" 2>&1 || fail "$w run: $(tail -3 "$TMPDIR/b.out")"
	LAST=$(tail -n 1 "$TMPDIR/b.out")
	case "$LAST" in "{"*"}") ;; *) fail "$w: last line is not JSON: $LAST" ;; esac
	for k in "$@"; do
		echo "$LAST" | grep -q "\"$k\":" || fail "$w: key $k missing: $LAST"
	done
}
value() {  # KEY: its number in $LAST
	echo "$LAST" | sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p"
}
positive() {  # WORKLOAD KEYS...
	local w=$1
	shift
	for k in "$@"; do
		awk -v v="$(value "$k")" 'BEGIN { exit !(v + 0 > 0) }' ||
			fail "$w: $k is not positive: $LAST"
	done
}

ARGS="--tasks 2000" check w1 tasks_per_s floor_tasks_per_s floor_idle_tasks_per_s floor_p50_us ratio_floor \
	ratio_floor_idle floor_batched_tasks_per_s floor_batch_tasks ratio_floor_batched checked
positive w1 floor_batched_tasks_per_s floor_batch_tasks ratio_floor_batched checked
[ "$(value checked)" = 6000 ] || fail "w1: 3 rounds of 2000 tasks, checked $(value checked)"
ARGS="--tasks 2000 --rounds 1 --no-dispatcher --servers 3" check w1 daemons checked
[ "$(value daemons)" = 3 ] || fail "w1 --servers 3: $LAST"
positive w1 floor_batched_tasks_per_s ratio_floor_batched checked
[ "$(value prefetch)" = 0 ] || fail "w1: prefetch is not 0 by default: $LAST"
ARGS="--tasks 2000 --rounds 1 --prefetch 2" check w1 prefetch tasks_per_s ratio_floor_idle checked
[ "$(value prefetch)" = 2 ] || fail "w1 --prefetch 2: $LAST"
[ "$(value checked)" = 2000 ] || fail "w1 --prefetch 2: checked $(value checked)"
"$B/mirai-bench" w1 --prefetch 1 --no-dispatcher >/dev/null 2>"$TMPDIR/err"
[ $? = 2 ] || fail "--prefetch without a dispatcher not refused"
ARGS="--tasks 300" check w2 p50_us p99_us floor_p50_us ratio_p50 checked
positive w2 checked
ARGS="--tasks 10" check w3 makespan_s optimal_s checked
positive w3 checked
ARGS="--tasks 20" check w4 MBps floor_MBps floor_idle_MBps floor_p50_us ratio_floor ratio_floor_best checked
positive w4 ratio_floor_best checked
ARGS="--tasks 20000" check w6 client_bytes_per_task bytes_per_task_beyond_payload checked
[ "$(value checked)" = 20000 ] || fail "w6: checked $(value checked)"

# TLS beside plain: the published keys, "tls":true, the plain_* keys.
tls_check() {  # TRANSPORT TASKS KEYS...: after check, on $LAST
	local t=$1 n=$2
	shift 2
	echo "$LAST" | grep -q '"tls":true' || fail "--tls: no \"tls\":true: $LAST"
	echo "$LAST" | grep -q "\"transport\":\"$t\"" || fail "--tls: transport is not $t: $LAST"
	echo "$LAST" | grep -q '"plain_transport":"ipc"' || fail "--tls: plain_transport: $LAST"
	for k in "$@"; do
		positive "$w" "$k" "plain_$k"
	done
	[ "$(value checked)" = "$n" ] && [ "$(value plain_checked)" = "$n" ] ||
		fail "--tls: $n results checked on each leg: $LAST"
}
w=w2
ARGS="--tasks 200 --tls" check w2 p50_us p99_us floor_p50_us floor_p99_us ratio_p50 \
	plain_p50_us plain_p99_us plain_floor_p50_us plain_floor_p99_us plain_ratio_p50 plain_checked checked
tls_check wss 200 p50_us p99_us floor_p50_us floor_p99_us ratio_p50
ARGS="--tasks 100 --rounds 1 --tls --no-dispatcher" check w2 p50_us plain_p50_us
tls_check tls+tcp 100 p50_us floor_p50_us ratio_p50
w=w4
ARGS="--tasks 10 --rounds 1 --tls" check w4 MBps floor_MBps floor_idle_MBps ratio_floor_best \
	plain_MBps plain_floor_MBps plain_floor_idle_MBps plain_ratio_floor_best plain_checked checked
tls_check wss 10 MBps floor_MBps floor_idle_MBps tasks_per_s floor_p50_us ratio_floor ratio_floor_best
ls "$TMPDIR" | grep -q mirai-bench-tls && fail "--tls left its directory behind: $(ls "$TMPDIR")"

# A wrong result ends the run with status 1 and names the task.
"$B/mirai-bench" w1 --tasks 300 --rounds 1 --bad-task 57 >/dev/null 2>"$TMPDIR/err"
[ $? = 1 ] || fail "a wrong result did not fail the run"
grep -q "task 57" "$TMPDIR/err" || fail "the failure does not name the task: $(cat "$TMPDIR/err")"
echo ok
