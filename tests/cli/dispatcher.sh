#!/usr/bin/env bash
# mirai-dispatcher's command line: help, version, bad input, and a run by
# hand that prints its slot URLs.
set -u
# A directory of this test's own, also when run alone without TMPDIR.
TMPDIR=$(mktemp -d "${TMPDIR:-/tmp}/cli.XXXXXX") || exit 1
trap 'rm -rf "$TMPDIR"' EXIT
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
# mem:// is the library's own link to a dispatcher thread.
expect 2 "$B/mirai-dispatcher" --listen mem://x -n 1
grep -q "mem://x: mem:// is internal" "$TMPDIR/err" || fail "mem:// message"
[ "$(wc -l <"$TMPDIR/err")" = 1 ] || fail "mem:// message: $(cat "$TMPDIR/err")"
expect 2 "$B/mirai-dispatcher" --client mem://x -n 1
grep -q "mem://x: mem:// is internal" "$TMPDIR/err" || fail "--client mem:// message"
expect 2 "$B/mirai-dispatcher" --client tcp://127.0.0.1:99999 -n 1
grep -q "port must be 1 to 65535" "$TMPDIR/err" || fail "--client port message"
# Nobody listens on port 1: it prints its URLs, then fails to dial.
expect 1 "$B/mirai-dispatcher" --client tcp://127.0.0.1:1 \
    --url ws://127.0.0.1:0 -n 3 --print-urls
[ "$(wc -l <"$TMPDIR/out")" = 3 ] || fail "expected 3 URLs: $(cat "$TMPDIR/out")"
grep -Eq '^ws://127\.0\.0\.1:[1-9][0-9]*/[0-9a-f]{32}/2$' "$TMPDIR/out" ||
	fail "URL shape: $(cat "$TMPDIR/out")"
[ "$(cut -d/ -f3 "$TMPDIR/out" | sort -u | wc -l)" = 1 ] || fail "one port for all"
grep -q "cannot dial" "$TMPDIR/err" || fail "dial failure message"

# --local passes --bind-count on: every local server binds to N units.
expect 0 "$B/mirai-dispatcher" --help
grep -q -- "--bind-count N" "$TMPDIR/out" || fail "--help lacks --bind-count"
expect 2 "$B/mirai-dispatcher" --client tcp://127.0.0.1:1 -n 1 --bind-count -1
grep -q "bind-count must be from 1" "$TMPDIR/err" || fail "bad --bind-count message"
"$B/mirai-dispatcher" --listen tcp://127.0.0.1:0 --control tcp://127.0.0.1:0 \
    --local -n 2 --bind-to core --bind-count 2 >"$TMPDIR/d.out" 2>"$TMPDIR/d.err" &
D=$!
trap 'kill -9 $D 2>/dev/null; wait $D 2>/dev/null; rm -rf "$TMPDIR"' EXIT
C=
for _ in $(seq 100); do
	C=$(sed -n 's/^MIRAI_CONTROL_URL=//p' "$TMPDIR/d.out")
	[ -n "$C" ] && MIRAI_CONTROL_URL=$C "$B/mirai" status --json >"$TMPDIR/st" 2>/dev/null &&
		[ "$(grep -o '"online":1' "$TMPDIR/st" | wc -l)" = 2 ] && break
	sleep 0.1
done
[ "$(grep -o '"online":1' "$TMPDIR/st" | wc -l)" = 2 ] ||
	fail "2 local servers online: $(cat "$TMPDIR/d.err")"
[ "$(pgrep -P "$D" -f -- '--bind-to core --bind-index [0-9]* --bind-planned --bind-count 2$' | wc -l)" = 2 ] ||
	fail "local servers without --bind-count 2: $(pgrep -a -P "$D")"
# The first one binds to units 0 and 1 (two of them wherever there are).
if [ "$(nproc)" -ge 2 ]; then
	grep -q '"binding":"core 0-1: cpus ' "$TMPDIR/st" || fail "binding: $(cat "$TMPDIR/st")"
fi
kill -TERM "$D"
wait "$D"; rc=$?
trap 'rm -rf "$TMPDIR"' EXIT
[ $rc = 0 ] || fail "SIGTERM: exit $rc"
echo ok
