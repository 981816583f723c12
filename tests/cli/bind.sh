#!/usr/bin/env bash
# mirai-server --bind-to / --bind-index: bad values are usage errors; a good
# one binds the whole server, its NNG threads included, before it dials.
set -u
# A directory of this test's own, also when run alone without TMPDIR.
TMPDIR=$(mktemp -d "${TMPDIR:-/tmp}/cli.XXXXXX") || exit 1
trap 'rm -rf "$TMPDIR"' EXIT
B=${BUILD:-build}/bin
fail() { echo "FAIL: $*"; exit 1; }
expect() {  # CODE COMMAND...: run, check the exit code
	local want=$1
	shift
	"$@" >"$TMPDIR/out" 2>"$TMPDIR/err"
	local got=$?
	[ "$got" = "$want" ] ||
	    fail "'$*' exited $got, expected $want: $(cat "$TMPDIR/err")"
}
# The CPU list of "bound to KIND N: cpus LIST" in the log, or nothing.
bound_cpus() {
	sed -n 's/.*bound to [a-z]* [0-9]*: cpus \([0-9,-]*\)$/\1/p' \
	    "$TMPDIR/err"
}
# The line number of the first line matching a pattern in the log.
line_of() { grep -n -m1 -- "$1" "$TMPDIR/err" | cut -d: -f1; }

expect 0 "$B/mirai-server" --help
grep -q -- "--bind-to KIND" "$TMPDIR/out" || fail "--help lacks --bind-to"
grep -q -- "--bind-index K" "$TMPDIR/out" || fail "--help lacks --bind-index"

# Bad values never reach the dial.
expect 2 "$B/mirai-server" --bind-to bogus tcp://127.0.0.1:1
grep -q "bind-to must be core, numa, socket or none, not 'bogus'" \
    "$TMPDIR/err" || fail "bad kind message: $(cat "$TMPDIR/err")"
expect 2 "$B/mirai-server" --bind-to "" tcp://127.0.0.1:1
expect 2 "$B/mirai-server" --bind-to core --bind-index -1 tcp://127.0.0.1:1
grep -q "bind-index must be from 0" "$TMPDIR/err" || fail "bad index message"
expect 2 "$B/mirai-server" --bind-to core --bind-index 99999999999 \
    tcp://127.0.0.1:1
expect 2 "$B/mirai-server" --bind-to core --bind-index two tcp://127.0.0.1:1

# Bound first, then the dial fails: the log says so in that order.
for kind in core numa socket; do
	expect 1 "$B/mirai-server" --verbose --bind-to $kind --bind-index 0 \
	    --dial-once tcp://127.0.0.1:1
	b=$(line_of "bound to $kind [0-9]*: cpus [0-9]")
	d=$(line_of "cannot dial tcp://127.0.0.1:1")
	[ -n "$b" ] || fail "no binding logged for $kind: $(cat "$TMPDIR/err")"
	[ -n "$d" ] || fail "no dial failure for $kind: $(cat "$TMPDIR/err")"
	[ "$b" -lt "$d" ] || fail "$kind: bound after the dial failed"
	grep -q "wrapped round" "$TMPDIR/err" && fail "$kind 0 warned of a wrap"
done

# An index past the last unit wraps round with a warning, also without
# --verbose; "none" binds nothing.
expect 1 "$B/mirai-server" --bind-to core --bind-index 100000 --dial-once \
    tcp://127.0.0.1:1
grep -q "bind index 100000 is past the last of [0-9]* usable core units" \
    "$TMPDIR/err" || fail "no wrap warning: $(cat "$TMPDIR/err")"
expect 1 "$B/mirai-server" -v --bind-to none --bind-index 3 --dial-once \
    tcp://127.0.0.1:1
grep -q "bound to" "$TMPDIR/err" && fail "--bind-to none bound"

# Inside a narrower affinity only its CPUs count: on one CPU there is one
# core, index 1 wraps round to it.
if command -v taskset >/dev/null; then
	cpu=$(taskset -cp $$ | sed 's/.*: //; s/[,-].*//')
	expect 1 taskset -c "$cpu" "$B/mirai-server" -v --bind-to core \
	    --bind-index 1 --dial-once tcp://127.0.0.1:1
	[ "$(bound_cpus)" = "$cpu" ] ||
	    fail "taskset -c $cpu: $(cat "$TMPDIR/err")"
	grep -q "past the last of 1 usable core units" "$TMPDIR/err" ||
	    fail "no wrap on one CPU: $(cat "$TMPDIR/err")"
fi

# A server that keeps retrying its dial has started NNG's threads: every
# one of them must hold the binding.  The index is far past the last core,
# so it wraps round, with a warning.
"$B/mirai-server" -v --bind-to core --bind-index 1000000 tcp://127.0.0.1:1 \
    >/dev/null 2>"$TMPDIR/err" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$TMPDIR"' EXIT
for _ in $(seq 100); do
	n=$(ls "/proc/$pid/task" 2>/dev/null | wc -l)
	[ "$n" -gt 1 ] && [ -n "$(bound_cpus)" ] && break
	sleep 0.05
done
[ "$n" -gt 1 ] || fail "the server started no threads"
# The warning counts the cores before binding: as the kernel tells them,
# among the CPUs this shell may use.
sys=/sys/devices/system/cpu
cores=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status |
	tr , '\n' | while IFS=- read -r a b; do seq "$a" "${b:-$a}"; done |
	while read -r c; do
		cat "$sys/cpu$c/topology/thread_siblings_list"
	done | sort -u | wc -l)
grep -q "past the last of $cores usable core units" "$TMPDIR/err" ||
    fail "wrap warning does not count $cores cores: $(cat "$TMPDIR/err")"
cpus=$(bound_cpus)
[ -n "$cpus" ] || fail "no binding logged: $(cat "$TMPDIR/err")"
for t in /proc/$pid/task/*; do
	got=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' "$t/status")
	[ "$got" = "$cpus" ] || fail "thread ${t##*/} on cpus $got, not $cpus"
done
kill $pid
wait $pid 2>/dev/null
trap 'rm -rf "$TMPDIR"' EXIT

# Placed one unit after another (--bind-planned: mirai-launch and the
# library's local servers), only the first server past the last unit
# warns of the wrap; the others note it at -v.
expect 1 "$B/mirai-server" --bind-planned --bind-to core --bind-index "$cores" \
    --dial-once tcp://127.0.0.1:1
grep -q "bind index $cores is past the last of $cores usable core units.*; so do the servers placed after it" \
    "$TMPDIR/err" || fail "no warning from the first wrap: $(cat "$TMPDIR/err")"
expect 1 "$B/mirai-server" --bind-planned --bind-to core \
    --bind-index $((cores + 1)) --dial-once tcp://127.0.0.1:1
grep -q "wrapped round" "$TMPDIR/err" &&
    fail "a planned server after the first warned: $(cat "$TMPDIR/err")"
expect 1 "$B/mirai-server" -v --bind-planned --bind-to core \
    --bind-index $((cores + 1)) --dial-once tcp://127.0.0.1:1
grep -q "info: .*bind index $((cores + 1)) is past the last" "$TMPDIR/err" ||
    fail "no note at -v: $(cat "$TMPDIR/err")"

# An oversubscribed launch on this host: one warning, however many
# servers share cores.
n=$((cores + 3))
MIRAI_SERVER=$B/mirai-server expect 0 timeout 60 "$B/mirai-launch" \
    --host "localhost:1" -n "$n" --oversubscribe -- true
[ "$(grep -c "wrapped round" "$TMPDIR/err")" = 1 ] ||
    fail "$n servers on $cores cores: $(cat "$TMPDIR/err")"
echo ok
