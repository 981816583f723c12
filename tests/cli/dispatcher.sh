#!/usr/bin/env bash
# mirai-dispatcher's command line: help, version, bad input, and a run by
# hand that prints its slot URLs.
set -u
B=${BUILD:-build}/bin
fail() { echo "FAIL: $*"; exit 1; }
expect() {
	local want=$1
	shift
	"$@" >"$TMPDIR/out" 2>"$TMPDIR/err"
	local got=$?
	[ "$got" = "$want" ] || fail "'$*' exited $got, expected $want: $(cat "$TMPDIR/err")"
}

expect 0 "$B/mirai-dispatcher" --help
grep -q -- "--no-token" "$TMPDIR/out" || fail "--help lacks --no-token"
for o in --tls-cert --tls-key --tls-ca; do
	grep -q -- "$o FILE" "$TMPDIR/out" || fail "--help lacks $o"
done
expect 0 "$B/mirai-dispatcher" --version
expect 2 env -u MIRAI_CLIENT_URL "$B/mirai-dispatcher" -n 2
grep -q "no client URL" "$TMPDIR/err" || fail "missing client message"
expect 2 "$B/mirai-dispatcher" --client tcp://127.0.0.1:1 --retries 300 -n 1
expect 2 "$B/mirai-dispatcher" --client tcp://127.0.0.1:1 --prefetch 1025 -n 1
expect 2 "$B/mirai-dispatcher" --client tcp://127.0.0.1:1 --prefetch -1 -n 1
expect 1 "$B/mirai-dispatcher" --client tcp://127.0.0.1:1 -n 0
grep -q "between 1 and" "$TMPDIR/err" || fail "slot count message"
expect 2 "$B/mirai-dispatcher" --client tcp://127.0.0.1:1 --url bogus -n 2
grep -q "bogus" "$TMPDIR/err" || fail "bad URL message"
# Nobody listens on port 1: it prints its URLs, then fails to dial.
expect 1 "$B/mirai-dispatcher" --client tcp://127.0.0.1:1 \
    --url ws://127.0.0.1:0 -n 3 --print-urls
[ "$(wc -l <"$TMPDIR/out")" = 3 ] || fail "expected 3 URLs: $(cat "$TMPDIR/out")"
grep -Eq '^ws://127\.0\.0\.1:[1-9][0-9]*/[0-9a-f]{32}/2$' "$TMPDIR/out" ||
	fail "URL shape: $(cat "$TMPDIR/out")"
[ "$(cut -d/ -f3 "$TMPDIR/out" | sort -u | wc -l)" = 1 ] || fail "one port for all"
grep -q "cannot dial" "$TMPDIR/err" || fail "dial failure message"
echo ok
