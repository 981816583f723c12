#!/usr/bin/env bash
# The mirai command against a dispatcher started by hand.
set -u
# A directory of this test's own, also when run alone without TMPDIR.
TMPDIR=$(mktemp -d "${TMPDIR:-/tmp}/cli.XXXXXX") || exit 1
trap 'rm -rf "$TMPDIR"' EXIT
B=${BUILD:-build}/bin
fail() { echo "FAIL: $*"; [ -n "${D:-}" ] && kill "$D" 2>/dev/null; exit 1; }

"$B/mirai" --help >"$TMPDIR/out" || fail "--help"
grep -q "exec COMMAND" "$TMPDIR/out" || fail "--help text"
for o in --tls-ca --tls-cert --tls-key; do
	grep -q -- "$o FILE" "$TMPDIR/out" || fail "--help lacks $o"
done
# A TLS URL without the CA: refused before dialing, naming what to give.
for c in status 'exec true'; do
	env -u MIRAI_TLS_CA "$B/mirai" --url tls+tcp://127.0.0.1:1 $c 2>"$TMPDIR/err"
	[ $? = 1 ] || fail "$c on a TLS URL without a CA: exit 1"
	grep -q "MIRAI_TLS_CA" "$TMPDIR/err" || fail "$c without a CA: $(cat "$TMPDIR/err")"
done
"$B/mirai" 2>/dev/null; [ $? = 2 ] || fail "no command: exit 2"
"$B/mirai" frobnicate 2>/dev/null; [ $? = 2 ] || fail "bad command: exit 2"
env -u MIRAI_CONTROL_URL "$B/mirai" status 2>"$TMPDIR/err"; [ $? = 1 ] || fail "status without URL: exit 1"
grep -q "MIRAI_CONTROL_URL" "$TMPDIR/err" || fail "status without URL: message"

"$B/mirai-dispatcher" --listen tcp://127.0.0.1:0 --control tcp://127.0.0.1:0 \
    --url ws://127.0.0.1:0 -n 1 --print-urls >"$TMPDIR/d.out" 2>"$TMPDIR/d.err" &
D=$!
for _ in $(seq 50); do grep -q MIRAI_CONTROL_URL "$TMPDIR/d.out" && break; sleep 0.1; done
grep -q MIRAI_CONTROL_URL "$TMPDIR/d.out" || fail "dispatcher URLs: $(cat "$TMPDIR/d.err")"
SLOT=$(head -1 "$TMPDIR/d.out")
export $(grep '^MIRAI_' "$TMPDIR/d.out" | tr '\n' ' ')
MIRAI_URL=$SLOT "$B/mirai-server" &
S=$!
for _ in $(seq 100); do "$B/mirai" status --json | grep -q '"online":1' && break; sleep 0.05; done

out=$("$B/mirai" exec 'echo out; echo err >&2; exit 4' 2>"$TMPDIR/err")
[ $? = 4 ] || fail "exec exit status"
[ "$out" = out ] || fail "exec stdout: $out"
grep -q '^err$' "$TMPDIR/err" || fail "exec stderr"
[ "$("$B/mirai" call mirai.echo hello)" = hello ] || fail "call"
[ "$(printf piped | "$B/mirai" call mirai.echo)" = piped ] || fail "call from stdin"
"$B/mirai" call no.such 2>"$TMPDIR/err"; [ $? = 1 ] || fail "unknown function: exit 1"
grep -q "ENOFUNC" "$TMPDIR/err" || fail "unknown function message"
"$B/mirai" --timeout 100ms call mirai.sleep 5000 2>"$TMPDIR/err"; [ $? = 1 ] || fail "timeout: exit 1"
grep -q "ETIMEDOUT" "$TMPDIR/err" || fail "timeout message"
json=$("$B/mirai" status --json) || fail "status"
case "$json" in *'"completed":'[3-9]*'"instance":1'*) ;; *) fail "status JSON: $json" ;; esac
new=$("$B/mirai" saisei 0 2>"$TMPDIR/err"); [ $? = 1 ] || fail "saisei while connected"
grep -q "force" "$TMPDIR/err" || fail "saisei message"
new=$("$B/mirai" saisei --force 0) || fail "saisei --force"
[ "$new" != "$SLOT" ] || fail "saisei gave the same URL"
case "$new" in ws://127.0.0.1:*/*/0) ;; *) fail "new URL: $new" ;; esac
# The cut-off server exits; the old URL is gone.
for _ in $(seq 100); do kill -0 "$S" 2>/dev/null || break; sleep 0.05; done
kill -0 "$S" 2>/dev/null && { kill "$S"; fail "cut-off server still running"; }
wait "$S"
kill "$D"; wait "$D" || fail "dispatcher exit status on SIGTERM"
echo ok
