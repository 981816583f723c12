#!/usr/bin/env bash
# The plugin example both ways, as the README's "Writing task functions"
# says: sum_client with local servers that load sum.so; the plugin built
# with pkg-config and loaded by a mirai-server started by hand; and
# sum_server, a server program of its own, dialing the same slot.
set -u
# A directory of this test's own, also when run alone without TMPDIR.
TMPDIR=$(mktemp -d "${TMPDIR:-/tmp}/cli.XXXXXX") || exit 1
B=${BUILD:-build}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait; rm -rf "$TMPDIR"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

out=$(timeout 60 "$B/examples/sum_client" "$B/examples/plugins/sum.so" 2>&1) ||
	fail "sum_client exited $?: $out"
for want in "sum of 1 2 3 = 6" "sum of 40 2 = 42" \
    "sum of 7 eleven failed: ETASK: not an integer: eleven"; do
	case "$out" in *"$want"*) ;; *) fail "missing '$want' in: $out" ;; esac
done

command -v pkg-config >/dev/null || { echo "SKIP: no pkg-config"; exit 77; }
export PKG_CONFIG_PATH=$B/lib/pkgconfig
# shellcheck disable=SC2046 # word splitting of the flags is wanted
cc -std=c11 -Wall -Wextra -Werror -shared -fPIC examples/plugins/sum.c \
    -o "$TMPDIR/sum.so" $(pkg-config --cflags --libs mirai) 2>"$TMPDIR/err" ||
	fail "building the plugin as the README says: $(cat "$TMPDIR/err")"

"$B/bin/mirai-dispatcher" --listen tcp://127.0.0.1:0 --control tcp://127.0.0.1:0 \
    --url tcp://127.0.0.1:0 -n 1 --print-urls >"$TMPDIR/d.out" 2>"$TMPDIR/d.err" &
pids+=($!)
for _ in $(seq 50); do grep -q MIRAI_CONTROL_URL "$TMPDIR/d.out" && break; sleep 0.1; done
grep -q MIRAI_CONTROL_URL "$TMPDIR/d.out" || fail "dispatcher URLs: $(cat "$TMPDIR/d.err")"
SLOT=$(head -1 "$TMPDIR/d.out")
export $(grep '^MIRAI_' "$TMPDIR/d.out" | tr '\n' ' ')
call() { timeout 20 "$B/bin/mirai" --timeout 10s call example.sum "$1"; }

# The plugin in mirai-server; it leaves after two tasks (exit code 5).
MIRAI_URL=$SLOT "$B/bin/mirai-server" --max-tasks 2 --plugin "$TMPDIR/sum.so" \
    2>"$TMPDIR/s.err" &
S=$!
pids+=($S)
[ "$(call "1 2 3")" = 6 ] || fail "example.sum in mirai-server: $(cat "$TMPDIR/s.err")"
call "1 x" 2>"$TMPDIR/err"; [ $? = 1 ] || fail "a failed task: exit 1"
grep -q "not an integer: x" "$TMPDIR/err" || fail "task error message: $(cat "$TMPDIR/err")"
for _ in $(seq 100); do kill -0 "$S" 2>/dev/null || break; sleep 0.1; done
kill -0 "$S" 2>/dev/null && fail "mirai-server --max-tasks 2 still running"
wait "$S"; rc=$?
[ "$rc" = 5 ] || fail "mirai-server --max-tasks 2 exited $rc"

# The same function in a server program of its own, on the same slot.
MIRAI_URL=$SLOT "$B/examples/sum_server" 2>"$TMPDIR/o.err" &
pids+=($!)
[ "$(call "40 2")" = 42 ] || fail "example.sum in sum_server: $(cat "$TMPDIR/o.err")"
[ "$(timeout 20 "$B/bin/mirai" call mirai.echo built-in)" = built-in ] ||
	fail "sum_server lacks the built-in functions"
timeout 20 "$B/bin/mirai" status --json | grep -q '"instance":2' || fail "status: $("$B/bin/mirai" status --json)"
env -u MIRAI_URL "$B/examples/sum_server" 2>/dev/null; [ $? = 2 ] || fail "sum_server without a URL: exit 2"
echo ok
