#!/usr/bin/env bash
# mirai-launch placement and up-front errors: plans printed by --dry-run
# (--cpus-per-server, --oversubscribe, max_slots), every error one line
# with exit status 2 before anything starts, and a dead host reported in
# one line however many slots it has.  Needs no sshd: the dead host's name
# does not resolve, and the live one is local.
set -u
B=${BUILD:-build}/bin
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
S=$ROOT/$B/mirai-server
W=$(mktemp -d "${TMPDIR:-/tmp}/launch-plan.XXXXXX")
fail() { echo "FAIL: $*"; rm -rf "$W"; exit 1; }
PLAN=(--dry-run --server-url ws://127.0.0.1:0)

printf 'n1 slots=8\nn2 slots=8 max_slots=12\n' >"$W/hosts"

# Slots are cores: 2 servers of 4 cores a host, bound to cores 0 and 4.
"$B/mirai-launch" --hostfile "$W/hosts" "${PLAN[@]}" --cpus-per-server 4 \
	>"$W/plan" 2>"$W/err" || fail "cpus-per-server plan: $(cat "$W/err")"
[ "$(wc -l <"$W/plan")" = 4 ] || fail "4 servers: $(cat "$W/plan")"
grep -q '"slot":3,"host":"n2","user":"","host_slot":1,"bind":"core","core":4,.*"cpus":4}' \
	"$W/plan" || fail "plan line: $(cat "$W/plan")"

# Oversubscribed: round robin, n2 stops at max_slots 12, n1 has no limit.
"$B/mirai-launch" --hostfile "$W/hosts" "${PLAN[@]}" -n 26 --oversubscribe \
	>"$W/plan" 2>"$W/err" || fail "oversubscribe plan: $(cat "$W/err")"
[ "$(grep -c '"host":"n1"' "$W/plan")" = 14 ] || fail "n1 servers: $(cat "$W/plan")"
[ "$(grep -c '"host":"n2"' "$W/plan")" = 12 ] || fail "n2 servers: $(cat "$W/plan")"

# Up-front errors: exit 2, one line naming what is wrong, nothing on stdout.
check() {  # WANT-MESSAGE ARGS...
	local want=$1; shift
	"$B/mirai-launch" "$@" >"$W/out" 2>"$W/err"
	local rc=$?
	[ $rc = 2 ] || fail "exit $rc, not 2, for: $* ($(cat "$W/err"))"
	[ "$(wc -l <"$W/err")" = 1 ] || fail "more than one line for: $*: $(cat "$W/err")"
	[ ! -s "$W/out" ] || fail "output for: $*"
	grep -qF -- "mirai-launch: $want" "$W/err" || fail "message for $*: $(cat "$W/err")"
}
check "-n 17 is more than the 16 slots of 2 hosts (--oversubscribe places more)" \
	--hostfile "$W/hosts" "${PLAN[@]}" -n 17
check "-n 17 is more than the 16 slots of 2 hosts (--oversubscribe places more)" \
	--hostfile "$W/hosts" "${PLAN[@]}" -n 17 --no-oversubscribe
check "-n 5 is more than the 16 slots of 2 hosts hold at --cpus-per-server 4" \
	--hostfile "$W/hosts" "${PLAN[@]}" -n 5 --cpus-per-server 4
printf 'n1 slots=2 max_slots=3\nn2 slots=2 max_slots=4\n' >"$W/limited"
check "-n 8 is more than the max_slots of the hosts allow (7 servers)" \
	--hostfile "$W/limited" "${PLAN[@]}" -n 8 --oversubscribe
check "--min-servers 17 is more than the 16 servers planned" \
	--hostfile "$W/hosts" "${PLAN[@]}" --min-servers 17
check "--min-servers 3 is more than the 2 servers planned" \
	--host n1:8 "${PLAN[@]}" --cpus-per-server 4 --min-servers 3
check "host n2 has 2 slots, fewer than --cpus-per-server 4" \
	--host n1:8,n2:2 "${PLAN[@]}" --cpus-per-server 4
check "--cpus-per-server 2 needs --bind-to core or none, not socket" \
	--host n1:8 "${PLAN[@]}" --cpus-per-server 2 --bind-to socket
check "--cpus-per-server 5000: out of range 0 to 4096" \
	--host n1:8 "${PLAN[@]}" --cpus-per-server 5000
check "--oversubscribe or --no-oversubscribe, not both" \
	--host n1:8 "${PLAN[@]}" --oversubscribe --no-oversubscribe
"$B/mirai-launch" --help | grep -q -- "--cpus-per-server N" || fail "--help: --cpus-per-server"
"$B/mirai-launch" --help | grep -q "2 bad command line" || fail "--help: exit status"

# A real server of 2 cores, here: bound to units 0 and 1 (one unit, wrapped
# round, on a machine with a single core).
out=$("$B/mirai-launch" --host localhost:2 --cpus-per-server 2 --server "$S" \
	--server-url ws://127.0.0.1:0 --report-bindings -q -- "$B/mirai" exec 'echo two' 2>"$W/err") ||
	fail "cpus-per-server launch: $(cat "$W/err")"
echo "$out" | grep -Eq '^localhost slot 0 core 0 cpus core 0(-1)?: cpus ' ||
	fail "binding of 2 cores: $out"
[ "$(echo "$out" | grep -c 'slot')" = 1 ] || fail "one server of 2 cores: $out"

# A dead host with 50 slots: one line about it, whether the launch fails...
: >"$W/ssh_config"
printf 'localhost slots=1\nnohost.invalid slots=50\n' >"$W/dead"
RUN=(--hostfile "$W/dead" --ssh-config "$W/ssh_config" --server "$S"
	--server-url ws://127.0.0.1:0 --timeout 20s)
"$B/mirai-launch" "${RUN[@]}" -- true >"$W/out" 2>"$W/err"
[ $? = 1 ] || fail "dead host: exit status: $(cat "$W/err")"
[ "$(grep -c nohost.invalid "$W/err")" = 1 ] || fail "dead host lines: $(cat "$W/err")"
grep -q "servers 1-50 on nohost.invalid: unreachable" "$W/err" || fail "dead host message: $(cat "$W/err")"
grep -q "nohost.invalid: nohost.invalid" "$W/err" && fail "host named twice: $(cat "$W/err")"
[ "$(wc -c <"$W/err")" -lt 600 ] || fail "dead host: $(wc -c <"$W/err") bytes of stderr"
# ... or goes on with the servers that came up.
out=$("$B/mirai-launch" "${RUN[@]}" --min-servers 1 -- "$B/mirai" exec 'echo up' 2>"$W/err") ||
	fail "min-servers with a dead host: $(cat "$W/err")"
[ "$out" = up ] || fail "output: $out"
[ "$(grep -c nohost.invalid "$W/err")" = 1 ] || fail "dead host lines (min-servers): $(cat "$W/err")"
grep -q "^mirai-launch: servers 1-50 on nohost.invalid: unreachable" "$W/err" ||
	fail "summary line: $(cat "$W/err")"
rm -rf "$W"
echo ok
