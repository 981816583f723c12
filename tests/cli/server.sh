#!/usr/bin/env bash
# mirai-server's command line: help, version, exit codes of bad input.
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
	[ "$got" = "$want" ] || fail "'$*' exited $got, expected $want: $(cat "$TMPDIR/err")"
}

expect 0 "$B/mirai-server" --help
grep -q "Exit status" "$TMPDIR/out" || fail "--help lacks the exit codes"
grep -q -- "--max-tasks" "$TMPDIR/out" || fail "--help lacks --max-tasks"
for o in --tls-ca --tls-cert --tls-key; do
	grep -q -- "$o FILE" "$TMPDIR/out" || fail "--help lacks $o"
done
expect 0 "$B/mirai-server" --version
grep -q "^mirai-server [0-9]" "$TMPDIR/out" || fail "--version output"
expect 2 "$B/mirai-server" --no-such-option
grep -q "unknown option" "$TMPDIR/err" || fail "unknown option message"
expect 2 env -u MIRAI_URL "$B/mirai-server"
grep -q "no URL" "$TMPDIR/err" || fail "missing URL message"
expect 2 "$B/mirai-server" --idle soon tcp://127.0.0.1:1
grep -q "not a valid" "$TMPDIR/err" || fail "bad duration message"
expect 2 "$B/mirai-server" --max-tasks -3 tcp://127.0.0.1:1
expect 1 "$B/mirai-server" --dial-once tcp://127.0.0.1:1
grep -q "cannot dial tcp://127.0.0.1:1" "$TMPDIR/err" || fail "dial failure message"
# "forever" is MIRAI_FOREVER: no limit, the same as none given.
expect 1 "$B/mirai-server" --idle forever --dial-once tcp://127.0.0.1:1
grep -q "cannot dial tcp://127.0.0.1:1" "$TMPDIR/err" || fail "dial failure message"
expect 1 "$B/mirai-server" --plugin /nonexistent.so tcp://127.0.0.1:1
grep -qi "plugin" "$TMPDIR/err" || fail "plugin failure message"
# A URL nobody listens on: the server keeps trying and says so at -v
# (every 10 s; a warning after a minute), without the URL's token.
tok=0123456789abcdef0123456789abcdef
expect 3 timeout 30 "$B/mirai-server" -v --idle 11s --url "ws://127.0.0.1:1/$tok/0"
grep -q "dialing ws://127.0.0.1:1/...: not connected after 10 s" "$TMPDIR/err" ||
	fail "no note of a failing dial: $(cat "$TMPDIR/err")"
grep -q "$tok" "$TMPDIR/err" && fail "the token shows in the log"
echo ok
