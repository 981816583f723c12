#!/usr/bin/env bash
# What a launch opens to the other users of its nodes (see README,
# Security).  With TLS client and control URLs the client command gets the
# launch's CA by environment (an owner-only file, never on a command
# line): `mirai` attaches, runs tasks and asks the status with it, says
# what is missing without it, and the URL's secret is needed too.
# Over ssh to 127.0.0.1 and 127.0.0.2 (a throwaway sshd: skipped, 77,
# when it cannot run), the default slots of a launch with remote hosts
# listen on the advertised host's address only; on every interface only
# when --server-url asks for it.
set -u
B=${BUILD:-build}/bin
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
S=$ROOT/$B/mirai-server
M=$ROOT/$B/mirai
W=$(mktemp -d "${TMPDIR:-/tmp}/secure.XXXXXX")
# Every server of this test carries TAG in its environment (-x TAG), so
# that the test finds and kills exactly its own.
TAG=MIRAI_SECURE_TEST=$$
ours() { grep -lzx "$TAG" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3; }
left() { ours | wc -l; }
fail() { echo "FAIL: $*"; cleanup; exit 1; }
cleanup() {
	for p in $(ours); do kill -9 "$p" 2>/dev/null; done
	"$ROOT/tests/sshd/sshd.sh" stop "$W/sshd" >/dev/null 2>&1
	rm -rf "$W"
}
gone() {  # bounded wait for the launch's servers to go
	for _ in $(seq 50); do [ "$(left)" = 0 ] && return 0; sleep 0.1; done
	fail "servers left after the launch: $(ours)"
}
# ---- a TLS client URL: the command gets the CA, by environment ---------
cat >"$W/client.sh" <<EOF
#!/bin/sh
env | grep '^MIRAI_' >"$W/env"
stat -c %a "\$MIRAI_TLS_CA" "\$(dirname "\$MIRAI_TLS_CA")" >"$W/modes"
echo "\$MIRAI_TLS_CA" >"$W/ca"
ps -eo args >"$W/ps"
"$M" status --json >"$W/status" || exit 11
"$M" exec 'echo over tls' >"$W/exec" || exit 12
printf 'echo a\necho b\n' | "$M" exec >"$W/farm" || exit 13
ca=\$MIRAI_TLS_CA
unset MIRAI_TLS_CA
"$M" status 2>"$W/noca.status" && exit 14
"$M" exec true 2>"$W/noca.exec" && exit 15
"$M" --tls-ca "\$ca" status --json >"$W/status2" || exit 16
"$M" --tls-ca "\$ca" exec 'echo by option' >"$W/exec2" || exit 17
# The client URL without its secret: refused.
"$M" --tls-ca "\$ca" --wait 5s --url "\${MIRAI_DISPATCHER_URL%/*/*}" exec true \
	2>"$W/notoken" && exit 18
exit 0
EOF
chmod 700 "$W/client.sh"
"$B/mirai-launch" --host localhost:2 --server "$S" -x "$TAG" \
	--client-url tls+tcp://127.0.0.1:0 --control-url tls+tcp://127.0.0.1:0 \
	-- "$W/client.sh" >"$W/out" 2>"$W/err"
rc=$?
[ $rc = 0 ] || fail "TLS client command exited $rc: $(cat "$W/err")"
grep -Eq '^MIRAI_DISPATCHER_URL=tls\+tcp://127\.0\.0\.1:[0-9]+/[0-9a-f]{32}/0$' "$W/env" ||
	fail "client URL without a secret: $(cat "$W/env")"
grep -Eq '^MIRAI_CONTROL_URL=tls\+tcp://127\.0\.0\.1:[0-9]+/[0-9a-f]{32}/0$' "$W/env" ||
	fail "control URL without a secret: $(cat "$W/env")"
grep -q '^MIRAI_TLS_CA=/' "$W/env" || fail "no MIRAI_TLS_CA: $(cat "$W/env")"
[ "$(tr '\n' ' ' <"$W/modes")" = "600 700 " ] || fail "CA file and directory modes: $(cat "$W/modes")"
grep -q "$(cat "$W/ca")" "$W/ps" && fail "the CA's path on a command line"
grep -q "refused" "$W/notoken" || fail "client URL without its secret: $(cat "$W/notoken")"
[ "$(grep -o '"online":1' "$W/status" | wc -l)" = 2 ] || fail "status over TLS: $(cat "$W/status")"
grep -qx 'over tls' "$W/exec" || fail "exec over TLS: $(cat "$W/exec")"
[ "$(cat "$W/farm")" = "$(printf 'a\nb')" ] || fail "exec list over TLS: $(cat "$W/farm")"
grep -q "MIRAI_TLS_CA" "$W/noca.status" || fail "status without CA: $(cat "$W/noca.status")"
grep -q "MIRAI_TLS_CA" "$W/noca.exec" || fail "exec without CA: $(cat "$W/noca.exec")"
grep -q '"online":1' "$W/status2" || fail "status with --tls-ca: $(cat "$W/status2")"
grep -qx 'by option' "$W/exec2" || fail "exec with --tls-ca: $(cat "$W/exec2")"
[ -e "$(cat "$W/ca")" ] && fail "the launch's CA outlived it"
gone

# ---- remote hosts over ssh: what the server slots bind -----------------
command -v ss >/dev/null || { echo "SKIP: no ss"; cleanup; exit 77; }
mkdir -p "$W/sshd"
"$ROOT/tests/sshd/sshd.sh" start "$W/sshd" $$ >"$W/sshd.env" 2>"$W/sshd.err" ||
	{ echo "SKIP: no sshd here: $(cat "$W/sshd.err")"; cleanup; exit 77; }
. "$W/sshd.env"
printf '127.0.0.1 slots=2\n127.0.0.2 slots=2\n' >"$W/hosts"
SSH=(--hostfile "$W/hosts" --ssh-config "$SSHD_CONFIG" --server "$S" -x "$TAG" -q)
# The command writes where its launcher listens (its parent) and runs a
# task on a remote server.
cat >"$W/where.sh" <<EOF
#!/bin/sh
ss -Hltnp | grep "pid=\$PPID," | awk '{print \$4}' >"$W/listen"
"$M" exec 'echo reached'
EOF
chmod 700 "$W/where.sh"

# --advertise ADDRESS: the slots listen there, and only there.
out=$("$B/mirai-launch" "${SSH[@]}" --advertise 127.0.0.1 -- "$W/where.sh" 2>"$W/err") ||
	fail "launch with --advertise: $(cat "$W/err")"
[ "$out" = reached ] || fail "a task on a remote server: $out"
[ -s "$W/listen" ] || fail "no listener found"
grep -v '^127\.0\.0\.1:' "$W/listen" && fail "listening beyond 127.0.0.1: $(cat "$W/listen")"
gone

# A wildcard host asked for: every interface.
out=$("$B/mirai-launch" "${SSH[@]}" --server-url 'ws://*:0' --advertise 127.0.0.1 \
	-- "$W/where.sh" 2>"$W/err") || fail "launch on every interface: $(cat "$W/err")"
[ "$out" = reached ] || fail "a task with a wildcard listener: $out"
grep -Eq '^(0\.0\.0\.0|\*|\[::\]):' "$W/listen" || fail "not on every interface: $(cat "$W/listen")"
gone

# The default: this host's name.  Where it resolves to a loopback address
# (Debian's 127.0.1.1, or 127.0.0.1 in a container) remote servers could
# not reach it: refused, saying what to give; else the slots listen on
# that name's address.
first=$(getent ahosts "$(hostname)" | awk 'NR == 1 {print $1}')
"$B/mirai-launch" "${SSH[@]}" -- "$W/where.sh" >"$W/out" 2>"$W/err"
rc=$?
case "$first" in
127.* | ::1 | ::ffff:127.*)
	[ $rc = 2 ] || fail "a name resolving to $first: exit $rc"
	grep -q "loopback" "$W/err" && grep -q -- "--advertise" "$W/err" ||
		fail "loopback message: $(cat "$W/err")"
	;;
*)
	[ $rc = 0 ] || fail "default launch: exit $rc: $(cat "$W/err")"
	addr=$(sed 's/:[0-9]*$//; s/^\[//; s/\]$//' "$W/listen" | sort -u)
	getent ahosts "$(hostname)" | awk '{print $1}' | grep -qxF "$addr" ||
		fail "listening on $addr, not an address of $(hostname)"
	;;
esac
gone

# A name that does not resolve: refused before anything starts.
"$B/mirai-launch" "${SSH[@]}" --advertise nohost.invalid -- true 2>"$W/err"
[ $? = 2 ] || fail "unresolvable --advertise: exit"
grep -q "nohost.invalid does not resolve" "$W/err" || fail "unresolvable message: $(cat "$W/err")"
gone
cleanup
echo ok
