#!/usr/bin/env bash
# The README's C code is the examples' code: its first C block is
# examples/quickstart.c, whole, and every other C block is a run of lines
# of some file under examples/.  The quick start is then built as the README
# says (pkg-config, here against the build tree's mirai-uninstalled.pc) and
# run against real local servers.
set -u
# A directory of this test's own, also when run alone without TMPDIR.
TMPDIR=$(mktemp -d "${TMPDIR:-/tmp}/cli.XXXXXX") || exit 1
trap 'rm -rf "$TMPDIR"' EXIT
B=${BUILD:-build}
fail() { echo "FAIL: $*"; exit 1; }
command -v pkg-config >/dev/null || { echo "SKIP: no pkg-config"; exit 77; }

# Each ```c block of the README into $TMPDIR/block.N.
awk -v dir="$TMPDIR" '
	/^```c$/ { n++; f = dir "/block." n; printf "" > f; inblock = 1; next }
	/^```/   { if (inblock) close(f); inblock = 0; next }
	inblock  { print > f }
	END      { print n + 0 > (dir "/blocks") }' README.md
n=$(cat "$TMPDIR/blocks")
[ "$n" -ge 1 ] || fail "no C block in README.md"
cmp -s "$TMPDIR/block.1" examples/quickstart.c ||
	fail "README's first C block differs from examples/quickstart.c:
$(diff "$TMPDIR/block.1" examples/quickstart.c)"
# Whether the lines of $1 occur, in a row, in $2.
contains() {
	awk 'NR == FNR { want[n++] = $0; next }
	     { line[m++] = $0 }
	     END { for (i = 0; i + n <= m; i++) {
	               for (j = 0; j < n && line[i + j] == want[j]; j++) ;
	               if (j == n) exit 0 }
	           exit 1 }' "$1" "$2"
}
for i in $(seq 2 "$n"); do
	found=
	for f in $(find examples -name '*.c'); do
		contains "$TMPDIR/block.$i" "$f" && { found=$f; break; }
	done
	[ -n "$found" ] || fail "README's C block $i is in no file under examples/:
$(cat "$TMPDIR/block.$i")"
done

# Built as the README says, strictly, against the build tree.
export PKG_CONFIG_PATH=$B/lib/pkgconfig
flags=$(pkg-config --cflags --libs mirai) || fail "pkg-config mirai (build tree)"
cc -std=c11 -pedantic -Wall -Wextra -Werror -o "$TMPDIR/quickstart" \
    -x c "$TMPDIR/block.1" -x none $flags 2>"$TMPDIR/err" ||
	fail "the README's program does not compile: $(cat "$TMPDIR/err")"
# mirai-server is found beside libmirai, as in an installed prefix.
out=$(env -u MIRAI_SERVER -u LD_LIBRARY_PATH "$TMPDIR/quickstart" 2>&1) ||
	fail "the README's program exited $?: $out"
[ "$out" = hello ] || fail "the README's program printed: $out"
echo ok
