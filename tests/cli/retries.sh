#!/usr/bin/env bash
# A dispatcher's own retry count (-r) applies to the tasks of a client that
# attaches and sets none: the first run of the command kills its server,
# the task runs again on the other one.  With -r 0 it resolves with 19.
set -u
B=${BUILD:-build}/bin
W=$(mktemp -d "${TMPDIR:-/tmp}/retries.XXXXXX")
D=
fail() { echo "FAIL: $*"; stop; rm -rf "$W"; exit 1; }
stop() {
	[ -n "$D" ] && kill "$D" 2>/dev/null && wait "$D" 2>/dev/null
	D=
}

run() { # RETRIES
	"$B/mirai-dispatcher" --listen tcp://127.0.0.1:0 --control tcp://127.0.0.1:0 \
	    -n 2 --local -r "$1" >"$W/d.out" 2>"$W/d.err" &
	D=$!
	for _ in $(seq 100); do grep -q MIRAI_CONTROL_URL "$W/d.out" && break; sleep 0.1; done
	grep -q MIRAI_CONTROL_URL "$W/d.out" || fail "dispatcher URLs: $(cat "$W/d.err")"
	export $(grep '^MIRAI_' "$W/d.out" | tr '\n' ' ')
	for _ in $(seq 100); do
		[ "$("$B/mirai" status --json | grep -o '"online":1' | wc -l)" = 2 ] && break
		sleep 0.05
	done
	rm -f "$W/ran"
	# The shell's parent is the server running the task.
	timeout 20 "$B/mirai" exec "if [ -e '$W/ran' ]; then echo rerun; else touch '$W/ran'; kill -9 \$PPID; sleep 5; fi" \
	    >"$W/out" 2>"$W/err"
}

run 1
[ $? = 0 ] || fail "-r 1: the task should run again: $(cat "$W/err")"
[ "$(cat "$W/out")" = rerun ] || fail "-r 1: output $(cat "$W/out")"
"$B/mirai" status --json | grep -q '"retried":1' || fail "-r 1: status $("$B/mirai" status --json)"
stop

run 0
[ $? = 1 ] || fail "-r 0: the task should fail"
grep -q "ECONNRESET\|connection reset" "$W/err" || fail "-r 0: message $(cat "$W/err")"
stop
rm -rf "$W"
echo ok
