#!/usr/bin/env bash
# mirai exec with a list of commands (the task farm) and the status table,
# against a dispatcher with two local servers on loopback.
set -u
B=${BUILD:-build}/bin
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
S=$ROOT/$B/mirai-server
W=$(mktemp -d "${TMPDIR:-/tmp}/mirai-exec.XXXXXX")
cleanup() {
	[ -n "${D:-}" ] && kill "$D" 2>/dev/null && wait "$D" 2>/dev/null
	rm -rf "$W"
}
fail() { echo "FAIL: $*"; cleanup; exit 1; }
trap cleanup EXIT
M() { "$B/mirai" "$@"; }

# Usage errors need no dispatcher.
M exec --joblog "$W/log" 'true' 2>"$W/err"; [ $? = 2 ] || fail "--joblog with one command: exit 2"
grep -q "list of commands" "$W/err" || fail "--joblog with one command: message"
M exec --halt sometimes - </dev/null 2>/dev/null; [ $? = 2 ] || fail "bad --halt: exit 2"
M exec --halt now,fail=0 - </dev/null 2>/dev/null; [ $? = 2 ] || fail "--halt fail=0: exit 2"
M exec -a "$W/none" 'true' 2>/dev/null; [ $? = 2 ] || fail "-a and a command: exit 2"

"$B/mirai-dispatcher" --listen tcp://127.0.0.1:0 --control tcp://127.0.0.1:0 \
	--url ws://127.0.0.1:0 -n 2 --local --server "$S" >"$W/d.out" 2>"$W/d.err" &
D=$!
for _ in $(seq 100); do grep -q MIRAI_CONTROL_URL "$W/d.out" && break; sleep 0.05; done
grep -q MIRAI_CONTROL_URL "$W/d.out" || fail "dispatcher URLs: $(cat "$W/d.err")"
export $(grep '^MIRAI_' "$W/d.out" | tr '\n' ' ')
for _ in $(seq 100); do [ "$(M status --json | grep -o '"online":1' | wc -l)" = 2 ] && break; sleep 0.05; done

# Status: a table by default, tokens masked; --json has everything.
M status >"$W/st" || fail "status"
head -1 "$W/st" | grep -Eq '^SLOT +URL +ONLINE +INSTANCE +ASSIGNED +COMPLETE +PID +HOST$' ||
	fail "status header: $(cat "$W/st")"
[ "$(grep -Ec '^[01] +ws://127\.0\.0\.1:[0-9]+/<secret>/[01] +yes +1 +[0-9]+ +[0-9]+ +[0-9]+ +[^ ]+$' "$W/st")" = 2 ] ||
	fail "status rows: $(cat "$W/st")"
grep -Eq '[0-9a-f]{32}' "$W/st" && fail "a token in the status table"
grep -q '^tasks: 0 queued, 0 running, ' "$W/st" || fail "status totals: $(cat "$W/st")"
M status --json >"$W/json" || fail "status --json"
[ "$(grep -Eo '"url":"ws://127\.0\.0\.1:[0-9]+/[0-9a-f]{32}/[01]"' "$W/json" | wc -l)" = 2 ] ||
	fail "status --json: $(cat "$W/json")"

# 500 lines, in input order, checked line by line; some finish late.
for i in $(seq 500); do
	if [ $((i % 50)) = 1 ]; then echo "sleep 0.05; echo line $i"; else echo "echo line $i"; fi
done >"$W/500"
M exec -a "$W/500" >"$W/out" 2>"$W/err" || fail "500 lines: exit $?: $(cat "$W/err")"
seq 500 | sed 's/^/line /' >"$W/want"
cmp -s "$W/out" "$W/want" || fail "500 lines out of order: $(diff "$W/want" "$W/out" | head)"
[ -s "$W/err" ] && fail "500 lines: stderr: $(cat "$W/err")"
# A small window keeps the order too.
M exec --window 4 -a "$W/500" >"$W/out" || fail "--window 4"
cmp -s "$W/out" "$W/want" || fail "--window 4 out of order"

# Standard input, as '-' and with no operand; blank lines skipped, '#'
# lines run (sh takes them as comments).
printf 'echo a\n\n   \n# a comment\necho b\r\n' >"$W/in"
[ "$(M exec - <"$W/in" | tr '\n' ,)" = "a,b," ] || fail "stdin with -"
[ "$(M exec --joblog "$W/log" <"$W/in" | tr '\n' ,)" = "a,b," ] || fail "stdin without operand"
[ "$(tail -n +2 "$W/log" | cut -f1 | sort -n | tr '\n' ,)" = "1,2,3," ] || fail "seq of 3 commands: $(cat "$W/log")"

# Unordered: output as tasks finish.
printf 'sleep 1; echo slow\necho fast\n' >"$W/un"
[ "$(M exec --unordered -a "$W/un" | tr '\n' ,)" = "fast,slow," ] || fail "--unordered"
[ "$(M exec -a "$W/un" | tr '\n' ,)" = "slow,fast," ] || fail "ordered by default"

# A failing command: its stderr passes, exit 1, a summary on stderr.
printf 'echo ok\necho oops >&2; exit 3\nkill -TERM $$\necho done\n' >"$W/f"
M exec -a "$W/f" --joblog "$W/log" >"$W/out" 2>"$W/err"; [ $? = 1 ] || fail "failures: exit 1"
[ "$(tr '\n' ,  <"$W/out")" = "ok,done," ] || fail "failures: stdout $(cat "$W/out")"
grep -qx oops "$W/err" || fail "failures: stderr of the command"
grep -q "2 of 4 tasks failed" "$W/err" || fail "failures: summary: $(cat "$W/err")"

# The joblog: a header, one line per task, GNU parallel's columns.
[ "$(head -1 "$W/log")" = "$(printf 'Seq\tHost\tSlot\tStarttime\tJobRuntime\tExitval\tSignal\tCommand')" ] ||
	fail "joblog header: $(head -1 "$W/log")"
[ "$(wc -l <"$W/log")" = 5 ] || fail "joblog lines: $(cat "$W/log")"
host=$(grep -o '"host":"[^"]*"' "$W/json" | head -1 | cut -d'"' -f4)
awk -F'\t' -v host="$host" 'NR > 1 && (NF != 8 || $2 != host || $3 != "-" ||
	$4 !~ /^[0-9]+\.[0-9][0-9][0-9]$/ || $5 !~ /^[0-9]+\.[0-9][0-9][0-9]$/) {exit 1}' "$W/log" ||
	fail "joblog fields: $(cat "$W/log")"
line() { awk -F'\t' -v s="$1" '$1 == s {print $6 "," $7 "," $8}' "$W/log"; }
[ "$(line 1)" = "0,0,echo ok" ] || fail "joblog 1: $(line 1)"
[ "$(line 2)" = "3,0,echo oops >&2; exit 3" ] || fail "joblog 2: $(line 2)"
[ "$(line 3)" = '143,15,kill -TERM $$' ] || fail "joblog 3: $(line 3)"
[ "$(line 4)" = "0,0,echo done" ] || fail "joblog 4: $(line 4)"
now=$(date +%s)
awk -F'\t' -v now="$now" 'NR > 1 && ($4 < now - 60 || $4 > now + 1) {exit 1}' "$W/log" ||
	fail "joblog start times: $(cat "$W/log")"

# A task error (timeout) fails the task, named on stderr.
printf 'sleep 5\necho after\n' >"$W/t"
M exec --timeout 200ms -a "$W/t" >"$W/out" 2>"$W/err"; [ $? = 1 ] || fail "timeout: exit 1"
grep -q "task 1 (sleep 5):.*ETIMEDOUT" "$W/err" || fail "timeout message: $(cat "$W/err")"
[ "$(cat "$W/out")" = after ] || fail "timeout: the other task"

# --halt soon: nothing new starts after the first failure, running tasks
# finish.
{ echo 'sleep 0.5; echo ran'; echo false; for i in $(seq 40); do echo "sleep 0.1; echo n$i"; done; } >"$W/h"
M exec --halt soon,fail=1 -a "$W/h" --joblog "$W/log" >"$W/out" 2>"$W/err"; [ $? = 1 ] || fail "halt soon: exit 1"
grep -qx ran "$W/out" || fail "halt soon: the running task finishes: $(cat "$W/out")"
[ "$(grep -c '^n' "$W/out")" -lt 20 ] || fail "halt soon: too many ran: $(cat "$W/out")"
grep -q "cancelled by --halt" "$W/err" || fail "halt soon: message: $(cat "$W/err")"
[ "$(line 1)" = "0,0,sleep 0.5; echo ran" ] || fail "halt soon: joblog: $(cat "$W/log")"

# --halt now: the running tasks are cancelled at once.
printf 'sleep 10; echo never\nfalse\nsleep 10\n' >"$W/h"
t0=$SECONDS
M exec --halt now,fail=1 -a "$W/h" >"$W/out" 2>"$W/err"; [ $? = 1 ] || fail "halt now: exit 1"
[ $((SECONDS - t0)) -lt 5 ] || fail "halt now took $((SECONDS - t0)) s"
[ -s "$W/out" ] && fail "halt now: output $(cat "$W/out")"
grep -q "1 of 3 tasks failed, 2 cancelled by --halt" "$W/err" || fail "halt now: message: $(cat "$W/err")"
# The servers are free again.
[ "$(M exec 'echo again')" = again ] || fail "after halt now"

# --halt never (the default) runs everything.
printf 'false\necho 2\nfalse\necho 4\n' >"$W/h"
M exec -a "$W/h" >"$W/out" 2>"$W/err"; [ $? = 1 ] || fail "halt never: exit 1"
[ "$(tr '\n' , <"$W/out")" = "2,4," ] || fail "halt never: $(cat "$W/out")"

# All good: exit 0; an empty list too.
printf 'true\ntrue\n' | M exec || fail "all succeed: exit $?"
M exec </dev/null || fail "empty list: exit $?"
M exec -a "$W/missing" 2>"$W/err"; [ $? = 1 ] || fail "missing file: exit 1"

# The dispatcher's own servers go with it.
servers=$(pgrep -P "$D" | tr '\n' ' ')
[ -n "$servers" ] || fail "no local servers under the dispatcher"
kill "$D"; wait "$D" || fail "dispatcher exit status on SIGTERM"
D=
alive() { for p in $servers; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
for _ in $(seq 50); do alive || break; sleep 0.1; done
for p in $servers; do kill -0 "$p" 2>/dev/null && { kill -9 "$p"; fail "server $p left"; }; done
echo ok
