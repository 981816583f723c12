#!/usr/bin/env bash
# mirai-bench's command line, and a short run of each workload whose last
# line must be one JSON object with the published keys.
set -u
B=${BUILD:-build}/bin
fail() { echo "FAIL: $*"; exit 1; }

"$B/mirai-bench" --help >"$TMPDIR/out" || fail "--help"
grep -q "WORKLOAD" "$TMPDIR/out" || fail "--help text"
"$B/mirai-bench" w9 2>/dev/null && fail "unknown workload accepted"
[ $? = 2 ] || fail "unknown workload exit code"

check() {  # WORKLOAD KEYS... : short run, check the keys of the last line
	local w=$1
	shift
	"$B/mirai-bench" "$w" $ARGS >"$TMPDIR/b.out" 2>&1 || fail "$w run: $(tail -3 "$TMPDIR/b.out")"
	local last
	last=$(tail -n 1 "$TMPDIR/b.out")
	case "$last" in "{"*"}") ;; *) fail "$w: last line is not JSON: $last" ;; esac
	for k in "$@"; do
		echo "$last" | grep -q "\"$k\":" || fail "$w: key $k missing: $last"
	done
}
ARGS="--tasks 2000" check w1 tasks_per_s floor_tasks_per_s floor_idle_tasks_per_s floor_p50_us ratio_floor
ARGS="--tasks 300" check w2 p50_us p99_us floor_p50_us ratio_p50
ARGS="--tasks 10" check w3 makespan_s optimal_s
ARGS="--tasks 20" check w4 MBps floor_MBps floor_idle_MBps floor_p50_us ratio_floor
echo ok
