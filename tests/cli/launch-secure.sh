#!/usr/bin/env bash
# What a launch opens to the other users of its nodes (see README,
# Security).  With TLS client and control URLs the client command gets the
# launch's CA by environment (an owner-only file, never on a command
# line): `mirai` attaches, runs tasks and asks the status with it, says
# what is missing without it, and a ws URL's secret path is needed too.
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
# The client URL without its secret path: nobody answers.
"$M" --tls-ca "\$ca" --wait 1s --url "\${MIRAI_DISPATCHER_URL%/*}" exec true \
	2>"$W/notoken" && exit 18
exit 0
EOF
chmod 700 "$W/client.sh"
"$B/mirai-launch" --host localhost:2 --server "$S" -x "$TAG" \
	--client-url wss://127.0.0.1:0 --control-url tls+tcp://127.0.0.1:0 \
	-- "$W/client.sh" >"$W/out" 2>"$W/err"
rc=$?
[ $rc = 0 ] || fail "TLS client command exited $rc: $(cat "$W/err")"
grep -Eq '^MIRAI_DISPATCHER_URL=wss://127\.0\.0\.1:[0-9]+/[0-9a-f]{32}$' "$W/env" ||
	fail "client URL without a secret path: $(cat "$W/env")"
grep -Eq '^MIRAI_CONTROL_URL=tls\+tcp://127\.0\.0\.1:[0-9]+$' "$W/env" ||
	fail "control URL: $(cat "$W/env")"
grep -q '^MIRAI_TLS_CA=/' "$W/env" || fail "no MIRAI_TLS_CA: $(cat "$W/env")"
[ "$(tr '\n' ' ' <"$W/modes")" = "600 700 " ] || fail "CA file and directory modes: $(cat "$W/modes")"
grep -q "$(cat "$W/ca")" "$W/ps" && fail "the CA's path on a command line"
grep -q "no secret" "$W/err" || fail "no warning for the tls+tcp control URL: $(cat "$W/err")"
[ "$(grep -o '"online":1' "$W/status" | wc -l)" = 2 ] || fail "status over TLS: $(cat "$W/status")"
grep -qx 'over tls' "$W/exec" || fail "exec over TLS: $(cat "$W/exec")"
[ "$(cat "$W/farm")" = "$(printf 'a\nb')" ] || fail "exec list over TLS: $(cat "$W/farm")"
grep -q "MIRAI_TLS_CA" "$W/noca.status" || fail "status without CA: $(cat "$W/noca.status")"
grep -q "MIRAI_TLS_CA" "$W/noca.exec" || fail "exec without CA: $(cat "$W/noca.exec")"
grep -q '"online":1' "$W/status2" || fail "status with --tls-ca: $(cat "$W/status2")"
grep -qx 'by option' "$W/exec2" || fail "exec with --tls-ca: $(cat "$W/exec2")"
[ -e "$(cat "$W/ca")" ] && fail "the launch's CA outlived it"
gone
cleanup
echo ok
