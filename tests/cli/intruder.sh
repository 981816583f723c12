#!/usr/bin/env bash
# Another user on the same node (nobody, through runuser) tries everything
# that `ss` shows of a default mirai-launch and of a client holding
# profiles in every mode (dispatcher thread, dispatcher process, direct,
# one-shot): status, exec, saisei, dialing as a server.  Everything must
# fail, and no token may show in what it can read (ps, status, errors).
# The owner's own requests through the same tools succeed, so the checks
# can fail.  Skipped (77) when not root or runuser is missing.
set -u
B=${BUILD:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# Under /tmp itself: the test runner's TMPDIR is owner-only, and the
# second user must reach its copy of the tools.
W=$(mktemp -d /tmp/mirai-intruder.XXXXXX)
chmod 755 "$W"
PIDS=()
fail() { echo "FAIL: $*"; cleanup; exit 1; }
cleanup() {
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	sleep 0.5
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
	pkill -9 -f "^$ROOT/$B/bin/mirai-server" -P "$$" 2>/dev/null
	rm -rf "$W"
}
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root to act as a second user"; rm -rf "$W"; exit 77; }
command -v runuser >/dev/null || { echo "SKIP: no runuser"; rm -rf "$W"; exit 77; }
command -v ss >/dev/null || { echo "SKIP: no ss"; rm -rf "$W"; exit 77; }
as_nobody() { runuser -u nobody -- env -i PATH=/usr/bin:/bin HOME=/ "$@"; }

# The intruder gets its own copy of the tools (the build tree may not be
# readable to others), world-readable.
mkdir -p "$W/pub/bin" "$W/pub/lib"
cp "$B/bin/mirai" "$B/bin/mirai-server" "$W/pub/bin/"
cp -P "$B"/lib/libmirai.so* "$W/pub/lib/"
chmod -R a+rX "$W/pub"
as_nobody "$W/pub/bin/mirai" --version >/dev/null ||
	fail "nobody cannot run the copied tools"

# A client holding a profile in every mode, each with work done.
cat >"$W/holder.c" <<'EOF'
#include <mirai.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(void) {
	const char *names[] = {"thread", "process", "direct"};
	int modes[] = {MIRAI_DISPATCHER_THREAD, MIRAI_DISPATCHER_PROCESS,
	    MIRAI_DISPATCHER_OFF};
	mirai_errmsg err;
	char buf[8];
	for (int i = 0; i < 3; i++) {
		mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
		mirai *m;
		d.profile = names[i];
		d.n = 2;
		d.dispatcher = modes[i];
		if (mirai_daemons(&d, &err) != 0) {
			fprintf(stderr, "%s: %s\n", names[i], err.text);
			return 1;
		}
		mirai_call_opts o = MIRAI_CALL_OPTS_INIT;
		o.profile = names[i];
		if (mirai_call(&o, "mirai.echo", "x", 1, &m) != 0 ||
		    mirai_wait(m) != 0) {
			return 1;
		}
		mirai_free(m);
	}
	/* A one-shot task that lasts while the intruder looks. */
	mirai *slow;
	mirai_call(NULL, "mirai.sleep", "20000", 5, &slow);
	printf("ready\n");
	fflush(stdout);
	while (read(0, buf, sizeof buf) > 0) {
	}
	mirai_free(slow);
	mirai_shutdown();
	return 0;
}
EOF
cc -std=c11 -o "$W/holder" "$W/holder.c" -I"$ROOT/include" -L"$B/lib" -lmirai \
    -Wl,-rpath,"$ROOT/$B/lib" || fail "cannot build the holder"

mkfifo "$W/hold.in"
MIRAI_SERVER="$ROOT/$B/bin/mirai-server" "$W/holder" <"$W/hold.in" >"$W/hold.out" 2>"$W/hold.err" &
PIDS+=($!)
exec 9>"$W/hold.in"
for _ in $(seq 100); do grep -q ready "$W/hold.out" && break; sleep 0.1; done
grep -q ready "$W/hold.out" || fail "holder: $(cat "$W/hold.err")"

# A default launch on hosts.example, its client command waiting.
"$B/bin/mirai-launch" --hostfile hosts.example -q -- \
    sh -c "env | grep '^MIRAI_' >'$W/launch.env'; sleep 60" 2>"$W/launch.err" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$W/launch.env" ] && break; sleep 0.1; done
[ -s "$W/launch.env" ] || fail "launch: $(cat "$W/launch.err")"
. <(sed 's/^/export /' "$W/launch.env")

# The owner can: status lists the slots with their tokens, exec runs, and
# a server of the owner's that dials a free slot says "connected" (what the
# intruder's must never say).
own=$("$B/bin/mirai" status --json) || fail "owner status"
echo "$own" | grep -q '"online":1' || fail "owner status: $own"
[ "$("$B/bin/mirai" exec 'id -un')" = root ] || fail "owner exec"
TOKENS=$(echo "$own" | grep -oE '[0-9a-f]{32}' | sort -u)
[ -n "$TOKENS" ] || fail "no tokens to look for in: $own"

# Free slots: the holder's servers die, so an intruder dialing a slot
# would take it (the slots stay, waiting).  The launch keeps its servers
# for the owner's last check; its slot 0 is freed below.
descendants() { # PID: all processes below it
	local kids
	kids=$(pgrep -P "$1")
	for k in $kids; do echo "$k"; descendants "$k"; done
}
for top in "${PIDS[0]}"; do
	for d in $(descendants "$top"); do
		case "$(cat /proc/$d/cmdline 2>/dev/null | tr '\0' ' ')" in
		*mirai-server*) kill -9 "$d" 2>/dev/null ;;
		esac
	done
done
sleep 1

# The launch's slot 0: its server is told to go, the owner's own server
# takes the slot for a second and leaves it free.
slot0=$(echo "$own" | grep -oE 'ws://[^"]*/0"' | tr -d '"')
"$B/bin/mirai" saisei --force 0 >/dev/null || fail "owner saisei"
own=$("$B/bin/mirai" status --json) || fail "owner status"
slot0=$(echo "$own" | grep -oE 'ws://[^"]*/0"' | tr -d '"')
out=$(timeout 10 "$B/bin/mirai-server" -v --dial-once --idle 1s --url "$slot0" 2>&1)
case "$out" in *leaving*) ;; *) fail "the owner's server at $slot0: $out" ;; esac
TOKENS=$(echo "$own" | grep -oE '[0-9a-f]{32}' | sort -u)

# Everything of ours that listens: tcp ports and unix sockets (of this
# test's processes only: other runs may share the machine).
ours() {
	for top in "${PIDS[@]}"; do
		echo "$top"
		descendants "$top"
	done | tr '\n' '|'
}
P=$(ours)
PORTS=$(ss -ltnpH | grep -E "pid=(${P%|})," | awk '{print $4}' | sed 's/.*://' | sort -u)
SOCKS=$(ss -lxpH | grep -E "pid=(${P%|})," | awk '{print $5}' | sort -u)
[ -n "$PORTS$SOCKS" ] || fail "found nothing listening"
echo "listening: tcp $(echo $PORTS) unix $(echo "$SOCKS" | wc -l)"

URLS=()
for p in $PORTS; do
	URLS+=("tcp://127.0.0.1:$p" "ws://127.0.0.1:$p/" "ws://127.0.0.1:$p/0"
	    "ws://127.0.0.1:$p/control")
done
for s in $SOCKS; do URLS+=("ipc://$s"); done

tried=0
for u in "${URLS[@]}"; do
	out=$(as_nobody timeout 10 "$W/pub/bin/mirai" -u "$u" status --json 2>&1) &&
		fail "nobody got a status from $u: $out"
	out2=$(as_nobody MIRAI_DISPATCHER_URL="$u" timeout 10 "$W/pub/bin/mirai" -w 2s exec 'id -un' 2>&1) &&
		fail "nobody ran a command through $u: $out2"
	out3=$(as_nobody timeout 10 "$W/pub/bin/mirai" -u "$u" saisei --force 0 2>&1) &&
		fail "nobody regenerated a slot at $u: $out3"
	out4=$(as_nobody timeout 10 "$W/pub/bin/mirai-server" -v --dial-once --max-tasks 1 \
	    --idle 2s --url "$u" 2>&1)
	# A listener of slots lets a connection in but refuses it at the
	# HELLO (no slot's secret): the server says so and never serves.
	case "$out4" in *leaving*) fail "nobody's server got a slot at $u: $out4" ;; esac
	for t in $TOKENS; do
		case "$out$out2$out3$out4" in *"$t"*) fail "a token leaked at $u" ;; esac
	done
	tried=$((tried + 4))
done
# What other users can read of our processes and files.
# (The tokens go to grep in a file: on its command line they would show
# in ps themselves.)
echo "$TOKENS" >"$W/tokens"
chmod 600 "$W/tokens"
as_nobody ps -eo args | grep -qF -f "$W/tokens" && fail "a token shows in ps"
as_nobody sh -c "cat /proc/[0-9]*/environ 2>/dev/null" | grep -aqF -f "$W/tokens" &&
	fail "a token shows in a readable environment"
for s in $SOCKS; do
	as_nobody ls "$(dirname "$s")" >/dev/null 2>&1 && fail "nobody can list $(dirname "$s")"
done

# The owner still can (nothing above broke the dispatcher).
[ "$("$B/bin/mirai" exec 'echo still')" = still ] || fail "owner exec after the attempts"
echo "intruder: $tried attempts on ${#URLS[@]} URLs refused, no token seen"
exec 9>&-
cleanup
echo ok
