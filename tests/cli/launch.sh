#!/usr/bin/env bash
# mirai-launch: plans, errors, and real launches over ssh to 127.0.0.1 and
# 127.0.0.2 through a throwaway sshd (tests/sshd/sshd.sh).  Exit 77 (skip)
# with the reason when sshd cannot run here.
set -u
B=${BUILD:-build}/bin
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
S=$ROOT/$B/mirai-server
W=$(mktemp -d "${TMPDIR:-/tmp}/launch.XXXXXX")
fail() { echo "FAIL: $*"; cleanup; exit 1; }
cleanup() {
	[ -n "${L:-}" ] && kill -9 "$L" 2>/dev/null
	"$ROOT/tests/sshd/sshd.sh" stop "$W/sshd" >/dev/null 2>&1
	pkill -9 -f "^$S" 2>/dev/null
	rm -rf "$W"
}
# Servers: the children a host's agent (mirai-server --stdin) starts.
count() { pgrep -f "^$S --bind-to" | wc -l; }
# Anything of ours still running: agents and servers.
left() { pgrep -f "^$S" | wc -l; }

# Plans need no sshd.
SLURM_JOB_NODELIST='tux[1-2]' SLURM_TASKS_PER_NODE='2(x2)' \
	"$B/mirai-launch" --dry-run --server-url ws://127.0.0.1:0 >"$W/plan" || fail "dry run"
[ "$(wc -l <"$W/plan")" = 4 ] || fail "plan lines: $(cat "$W/plan")"
grep -q '"slot":3,"host":"tux2","user":"","host_slot":1,"bind":"core","core":1,"local":false,"url":"wss://127.0.0.1:<port>/<token>/3"' "$W/plan" ||
	fail "plan line: $(cat "$W/plan")"
printf 'good slots=2\nbad slots=0\n' >"$W/badhosts"
"$B/mirai-launch" --hostfile "$W/badhosts" --dry-run 2>"$W/err"; [ $? = 1 ] || fail "bad hostfile exit"
grep -q "badhosts:2: slots must be a positive integer" "$W/err" || fail "bad hostfile message: $(cat "$W/err")"
env -u SLURM_JOB_NODELIST -u SLURM_NODELIST -u PBS_NODEFILE -u PE_HOSTFILE \
	-u LSB_MCPU_HOSTS "$B/mirai-launch" -- true 2>"$W/err"; [ $? = 2 ] || fail "no hosts exit"
grep -q "no hosts" "$W/err" || fail "no hosts message"
"$B/mirai-launch" --host a --bind-to elbow --dry-run 2>/dev/null; [ $? = 2 ] || fail "bad bind-to"

# -x VAR of a variable not set here: an error naming it, nothing started.
env -u MIRAI_NOT_SET "$B/mirai-launch" --host localhost:1 --server "$S" -q \
	-x MIRAI_NOT_SET -- true 2>"$W/err"; [ $? = 2 ] || fail "-x unset: exit"
grep -q "MIRAI_NOT_SET is not set" "$W/err" || fail "-x unset message: $(cat "$W/err")"

# A SIGCHLD ignored by the caller is reset, not waited on for ever (a
# waitpid() loop on ECHILD): the launcher with a command, and a host agent
# stopping its two servers at the end of its stdin.
out=$(timeout 30 perl -e '$SIG{CHLD} = "IGNORE"; exec @ARGV' -- "$B/mirai-launch" \
	--host localhost:2 --server "$S" --server-url ws://127.0.0.1:0 -q \
	-- "$B/mirai" exec 'echo reaped') || fail "launch with SIGCHLD ignored: $out"
[ "$out" = reaped ] || fail "SIGCHLD ignored: $out"
url=tcp://127.0.0.1:9
rec() { printf 'U\x15\0\0\0\xff\xff\xff\xff%s' "$url"; }
{ printf 'H\x0d\0\0\0mirai-agent/1'; rec; rec; printf 'Z\0\0\0\0'; } |
	timeout 30 perl -e '$SIG{CHLD} = "IGNORE"; exec @ARGV' -- "$S" --stdin -q
rc=$?
[ $rc = 0 ] || [ $rc = 7 ] || fail "agent with SIGCHLD ignored: exit $rc"

gone() { for _ in $(seq 50); do pgrep -f "$1" >/dev/null || return 0; sleep 0.1; done; return 1; }
# A signal during the start ends it at once (not after --timeout, 60 s):
# the servers never come online here, and a TERM after a second tears
# down what was started, exit 128 + 15.
printf '#!/bin/sh\nexec sleep 30.202\n' >"$W/mute-server"
chmod 700 "$W/mute-server"
t0=$(date +%s)
"$B/mirai-launch" --host localhost:2 --server "$W/mute-server" -q -- true &
L=$!
sleep 1
kill -TERM "$L"; wait "$L"; rc=$?; L=
[ $rc = 143 ] || fail "TERM during the start: exit $rc"
[ $(($(date +%s) - t0)) -lt 15 ] || fail "TERM during the start took $(($(date +%s) - t0)) s"
gone "sleep 30.202" || fail "servers left after a TERM during the start"

# The client command ends with the launcher: a TERM ends it (a KILL after
# 5 s when it ignores the TERM), exit 128 + 15; after a kill -9 of the
# launcher it gets a TERM from the kernel.
"$B/mirai-launch" --host localhost:1 --server "$S" -q -- sleep 30.101 &
L=$!
for _ in $(seq 100); do pgrep -f '^sleep 30.101' >/dev/null && break; sleep 0.1; done
kill -TERM "$L"; wait "$L"; rc=$?; L=
[ $rc = 143 ] || fail "TERM: exit $rc"
gone '^sleep 30.101' || fail "the command outlived a TERM of the launcher"
"$B/mirai-launch" --host localhost:1 --server "$S" -q -- sh -c 'trap "" TERM; sleep 30.102' &
L=$!
for _ in $(seq 100); do pgrep -f '^sleep 30.102' >/dev/null && break; sleep 0.1; done
t0=$SECONDS
kill -TERM "$L"; wait "$L"; rc=$?; L=
[ $rc = 143 ] || fail "TERM of a command ignoring it: exit $rc"
gone '^sleep 30.102' || fail "a command ignoring TERM outlived the grace"
[ $((SECONDS - t0)) -ge 4 ] || fail "KILL came before the grace period"
"$B/mirai-launch" --host localhost:1 --server "$S" -q -- sleep 30.103 &
L=$!
for _ in $(seq 100); do pgrep -f '^sleep 30.103' >/dev/null && break; sleep 0.1; done
kill -9 "$L"; wait "$L" 2>/dev/null; L=
gone '^sleep 30.103' || fail "the command outlived a kill -9 of the launcher"
for _ in $(seq 50); do [ "$(left)" = 0 ] && break; sleep 0.1; done
[ "$(left)" = 0 ] || fail "servers left after kill -9 of a local launch"

# Local hosts start without ssh.
out=$("$B/mirai-launch" --host localhost:2 --server "$S" --server-url ws://127.0.0.1:0 -q \
	-- "$B/mirai" exec 'echo local') || fail "local launch: $out"
[ "$out" = local ] || fail "local output: $out"

# --heartbeat: the dispatcher and the servers get it.  A server stopped
# past it is taken as lost (the launcher's log says so, with the
# interval), and once woken it is told to exit and does.
"$B/mirai-launch" --host localhost --heartbeat soon -- true 2>"$W/err"
[ $? = 2 ] || fail "--heartbeat soon: exit"
grep -q "heartbeat: 'soon' is not a TIME or off" "$W/err" || fail "bad heartbeat message: $(cat "$W/err")"
"$B/mirai-launch" --help | grep -q -- "--heartbeat TIME" || fail "--help lacks --heartbeat"
"$B/mirai-launch" --host localhost:2 --server "$S" --server-url ws://127.0.0.1:0 \
	--heartbeat 1500ms -- sleep 30.104 2>"$W/hb.err" &
L=$!
hb_servers() { pgrep -P "$L" -f "^$S .*--heartbeat 1500( |$)"; }
for _ in $(seq 100); do [ "$(hb_servers | wc -l)" = 2 ] && grep -q '2/2 servers online' "$W/hb.err" && break; sleep 0.1; done
[ "$(hb_servers | wc -l)" = 2 ] || fail "2 servers with --heartbeat 1500: $(pgrep -a -P "$L")"
victim=$(hb_servers | head -n 1)
kill -STOP "$victim"
for _ in $(seq 50); do grep -q "silent for [0-9]* ms (heartbeat 1500 ms): taken as lost" "$W/hb.err" && break; sleep 0.1; done
grep -q "silent for [0-9]* ms (heartbeat 1500 ms): taken as lost" "$W/hb.err" ||
	fail "a server stopped past the heartbeat: $(cat "$W/hb.err")"
kill -CONT "$victim"
for _ in $(seq 100); do kill -0 "$victim" 2>/dev/null || break; sleep 0.1; done
kill -0 "$victim" 2>/dev/null && fail "a woken server that was taken as lost stayed"
kill -TERM "$L"; wait "$L"; rc=$?; L=
[ $rc = 143 ] || fail "TERM of the heartbeat launch: exit $rc"
gone '^sleep 30.104' || fail "the command outlived the heartbeat launch"

mkdir -p "$W/sshd"
if ! "$ROOT/tests/sshd/sshd.sh" start "$W/sshd" $$ >"$W/sshd.env" 2>"$W/sshd.err"; then
	echo "SKIP: no sshd here: $(cat "$W/sshd.err")"
	cleanup
	exit 77
fi
. "$W/sshd.env"
SSH=(--ssh-config "$SSHD_CONFIG" --server "$S" --server-url ws://127.0.0.1:0)
printf '127.0.0.1 slots=2\n127.0.0.2 slots=2\n' >"$W/hosts"

# A client command: status, exec, its exit code; bindings reported.
"$B/mirai-launch" --hostfile "$W/hosts" "${SSH[@]}" --report-bindings -q \
	-- sh -c "'$B/mirai' status --json && '$B/mirai' exec 'echo remote' && exit 7" >"$W/out" 2>"$W/err"
[ $? = 7 ] || fail "exit status of the command: $(cat "$W/err")"
grep -q '"online":1' "$W/out" || fail "status: $(cat "$W/out")"
[ "$(grep -o '"online":1' "$W/out" | wc -l)" = 4 ] || fail "4 online: $(cat "$W/out")"
grep -qx remote "$W/out" || fail "exec output"
grep -q '^127.0.0.2 slot 3 core 1 cpus' "$W/out" || fail "report-bindings: $(cat "$W/out")"
# A remote host: TLS by default, every slot wss:// (the CA went over ssh).
[ "$(grep -o '"url":"wss://' "$W/out" | wc -l)" = 4 ] || fail "TLS slots: $(cat "$W/out")"
for _ in $(seq 50); do [ "$(left)" = 0 ] && break; sleep 0.1; done
[ "$(left)" = 0 ] || fail "servers left after the launch"

# Servers of 2 cores over ssh: the host agent passes --bind-count on.
"$B/mirai-launch" --hostfile "$W/hosts" "${SSH[@]}" --cpus-per-server 2 --report-bindings -q \
	-- "$B/mirai" exec true >"$W/out" 2>"$W/err" || fail "cpus-per-server over ssh: $(cat "$W/err")"
grep -Eq '^127.0.0.2 slot 1 core 0 cpus core 0(-1)?: cpus ' "$W/out" ||
	fail "report-bindings with --cpus-per-server: $(cat "$W/out")"
for _ in $(seq 50); do [ "$(left)" = 0 ] && break; sleep 0.1; done

# No secret on a command line: the tokens are not in ps.  (--heartbeat
# reaches the servers through their host's agent.)
"$B/mirai-launch" --hostfile "$W/hosts" "${SSH[@]}" -q --heartbeat 20s >"$W/urls" 2>"$W/err" &
L=$!
for _ in $(seq 100); do [ "$(count)" = 4 ] && grep -q '/3$' "$W/urls" && break; sleep 0.1; done
[ "$(count)" = 4 ] || fail "4 servers up: $(cat "$W/err")"
[ "$(pgrep -f "^$S --bind-to .*--heartbeat 20000( |$)" | wc -l)" = 4 ] ||
	fail "remote servers without --heartbeat 20000: $(pgrep -af "^$S")"
token=$(grep '/3$' "$W/urls" | cut -d/ -f4)
[ ${#token} = 32 ] || fail "token: $token"
ps -eo args >"$W/ps"
grep -q "$token" "$W/ps" && fail "a token shows in ps"
# The slots are wss://: a server without the launch's CA cannot take one,
# in clear or over TLS.
slot=$(grep '/3$' "$W/urls")
case "$slot" in wss://*) ;; *) fail "slot not TLS: $slot" ;; esac
"$S" --dial-once --url "ws://${slot#wss://}" 2>"$W/plain.err" &&
	fail "a plain ws server took a TLS slot"
"$S" --dial-once --url "$slot" 2>"$W/noca.err"; [ $? = 2 ] ||
	fail "wss without a CA: $(cat "$W/noca.err")"
grep -q "tls_ca" "$W/noca.err" || fail "no-CA message: $(cat "$W/noca.err")"
# kill -9 of the launcher: every server on every host goes.
kill -9 "$L"; wait "$L" 2>/dev/null; L=
for _ in $(seq 50); do [ "$(left)" = 0 ] && break; sleep 0.1; done
[ "$(left)" = 0 ] || fail "servers left after kill -9 of the launcher"

# SIGTERM while the command runs: the command gets it, then teardown.
"$B/mirai-launch" --hostfile "$W/hosts" "${SSH[@]}" -q -- sleep 30 &
L=$!
for _ in $(seq 100); do [ "$(count)" = 4 ] && break; sleep 0.1; done
kill -TERM "$L"; wait "$L"; rc=$?; L=
[ $rc = 143 ] || fail "SIGTERM exit status $rc"
for _ in $(seq 50); do [ "$(left)" = 0 ] && break; sleep 0.1; done
[ "$(left)" = 0 ] || fail "servers left after SIGTERM"

# Failures are reported per host; --min-servers decides.
printf '127.0.0.1 slots=2\n127.0.0.4 slots=1\n' >"$W/hosts3"
"$B/mirai-launch" --hostfile "$W/hosts3" "${SSH[@]}" -q -- true 2>"$W/err"
[ $? = 1 ] || fail "unreachable host: exit"
grep -q "127.0.0.4: unreachable" "$W/err" || fail "unreachable message: $(cat "$W/err")"
"$B/mirai-launch" --hostfile "$W/hosts3" "${SSH[@]}" -q --min-servers 2 \
	-- "$B/mirai" exec true 2>"$W/err" || fail "min-servers: $(cat "$W/err")"
grep -q "server 2 on 127.0.0.4" "$W/err" || fail "per-server failure line"
"$B/mirai-launch" --hostfile "$W/hosts" --ssh-config "$SSHD_CONFIG" \
	--server /nonexistent/mirai-server --server-url ws://127.0.0.1:0 -q -- true 2>"$W/err"
[ $? = 1 ] || fail "missing binary: exit"
grep -q "server binary missing" "$W/err" || fail "missing binary message: $(cat "$W/err")"
# Host keys: strict by default; an empty known_hosts refuses.
: >"$W/empty_known"
"$B/mirai-launch" --hostfile "$W/hosts" "${SSH[@]}" --known-hosts "$W/empty_known" -q -- true 2>"$W/err"
[ $? = 1 ] || fail "unknown host key accepted"
grep -q "unknown host key" "$W/err" || fail "host key message: $(cat "$W/err")"
"$B/mirai-launch" --hostfile "$W/hosts" "${SSH[@]}" --known-hosts "$W/empty_known" \
	--accept-new -q -- true 2>"$W/err" || fail "accept-new: $(cat "$W/err")"
grep -q "127.0.0.2" "$W/empty_known" || fail "accept-new did not learn the key"

# Forwarded environment reaches remote servers, without ps.
out=$(SECRET_X=s3cr3t "$B/mirai-launch" --hostfile "$W/hosts" "${SSH[@]}" -q \
	-x SECRET_X -x OTHER=2 -- "$B/mirai" exec 'echo "$SECRET_X $OTHER"') || fail "env forwarding"
[ "$out" = "s3cr3t 2" ] || fail "forwarded env: $out"
# Values arrive whole: 100 KB, several lines (one of them the old line
# protocol's 'end'), everything after the first '='.
BIG=$(head -c 76800 /dev/urandom | base64 -w0)
MULTI=$'line one\nend\nenv X=1\n\nlast line\n'
want="$(printf %s "$BIG" | sha256sum)
$(printf %s "$MULTI" | sha256sum)
a=b=c"
out=$(BIG=$BIG MULTI=$MULTI "$B/mirai-launch" --hostfile "$W/hosts" "${SSH[@]}" -q \
	-x BIG -x MULTI -x 'EQ=a=b=c' -- "$B/mirai" exec \
	'printf "%s" "$BIG" | sha256sum; printf "%s" "$MULTI" | sha256sum; printf "%s\n" "$EQ"') ||
	fail "long values: $out"
[ "$out" = "$want" ] || fail "values changed on the way: $out"
[ ${#BIG} -ge 102400 ] || fail "BIG is only ${#BIG} bytes"
cleanup
echo ok
