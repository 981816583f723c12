#!/usr/bin/env bash
# make install and uninstall into temporary directories: a prefix of its
# own (mirai.pc names it and gives an rpath; a program built with pkg-config
# runs without LD_LIBRARY_PATH), a staged install (DESTDIR stays out of
# mirai.pc), custom LIBDIR and INCDIR.  ldconfig never runs here: no
# install goes to a directory the dynamic linker searches without DESTDIR.
set -u
# A directory of this test's own, also when run alone without TMPDIR.
TMPDIR=$(mktemp -d "${TMPDIR:-/tmp}/cli.XXXXXX") || exit 1
trap 'rm -rf "$TMPDIR"' EXIT
B=${BUILD:-build}
T=$TMPDIR/install
fail() { echo "FAIL: $*"; exit 1; }
command -v pkg-config >/dev/null || { echo "SKIP: no pkg-config"; exit 77; }
# A make of its own, not a part of a calling one.
mk() { env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s BUILD="$B" "$@"; }
pc() {  # PC_DIR ARGS...: pkg-config on that directory only
	local dir=$1
	shift
	PKG_CONFIG_PATH=$dir PKG_CONFIG_LIBDIR=$dir pkg-config "$@" mirai
}
left() { find "$1" ! -type d; }  # files and links left under $1

# 1. A prefix of its own.
mk install PREFIX="$T/opt" DESTDIR= >"$TMPDIR/out" 2>&1 || fail "install: $(cat "$TMPDIR/out")"
for f in bin/mirai-server bin/mirai-dispatcher bin/mirai-launch bin/mirai \
    lib/libmirai.so lib/libmirai.a include/mirai.h lib/pkgconfig/mirai.pc \
    share/man/man1/mirai-server.1; do
	[ -e "$T/opt/$f" ] || fail "not installed: $f"
done
grep -q "^prefix=$T/opt\$" "$T/opt/lib/pkgconfig/mirai.pc" ||
	fail "mirai.pc prefix: $(cat "$T/opt/lib/pkgconfig/mirai.pc")"
[ "$(pc "$T/opt/lib/pkgconfig" --variable=libdir)" = "$T/opt/lib" ] || fail "libdir"
[ "$(pc "$T/opt/lib/pkgconfig" --variable=includedir)" = "$T/opt/include" ] || fail "includedir"
flags=$(pc "$T/opt/lib/pkgconfig" --cflags --libs) || fail "pkg-config"
case "$flags" in *"-Wl,-rpath,$T/opt/lib"*) ;; *) fail "no rpath in: $flags" ;; esac
grep -q "not searched by the dynamic linker.*-Wl,-rpath,$T/opt/lib.*LD_LIBRARY_PATH" \
    "$TMPDIR/out" || fail "install did not say how to find the library: $(cat "$TMPDIR/out")"
# shellcheck disable=SC2086 # word splitting of the flags is wanted
cc -std=c11 -Wall -Wextra -Werror -o "$TMPDIR/prog" examples/quickstart.c $flags \
    2>"$TMPDIR/err" || fail "compile against the install: $(cat "$TMPDIR/err")"
env -u LD_LIBRARY_PATH ldd "$TMPDIR/prog" | grep -q "libmirai.so.0 => $T/opt/lib/" ||
	fail "the program does not use the installed library: $(ldd "$TMPDIR/prog")"
# The library finds the installed mirai-server beside it.
out=$(env -u LD_LIBRARY_PATH -u MIRAI_SERVER -u MIRAI_DISPATCHER timeout 60 \
    "$TMPDIR/prog" 2>&1) || fail "the program exited $?: $out"
[ "$out" = hello ] || fail "the program printed: $out"
env -u LD_LIBRARY_PATH "$T/opt/bin/mirai-server" --version >/dev/null ||
	fail "installed mirai-server does not run"
mk uninstall PREFIX="$T/opt" DESTDIR= >"$TMPDIR/out" 2>&1 || fail "uninstall: $(cat "$TMPDIR/out")"
[ -z "$(left "$T/opt")" ] || fail "left after uninstall: $(left "$T/opt")"

# 2. Staged for a package: files under DESTDIR, mirai.pc for /usr/local.
S=$T/stage
mk install DESTDIR="$S" PREFIX=/usr/local >"$TMPDIR/out" 2>&1 || fail "staged install: $(cat "$TMPDIR/out")"
[ -e "$S/usr/local/lib/libmirai.so.0" ] || fail "staged library missing"
[ -e "$S/usr/local/bin/mirai-server" ] || fail "staged mirai-server missing"
grep -q '^prefix=/usr/local$' "$S/usr/local/lib/pkgconfig/mirai.pc" || fail "staged prefix"
grep -q "$S" "$S/usr/local/lib/pkgconfig/mirai.pc" && fail "DESTDIR in mirai.pc"
grep -q rpath "$S/usr/local/lib/pkgconfig/mirai.pc" && fail "rpath for /usr/local"
[ "$(pc "$S/usr/local/lib/pkgconfig" --variable=libdir)" = /usr/local/lib ] || fail "staged libdir"
grep -q "ldconfig once the files are in /usr/local/lib" "$TMPDIR/out" ||
	fail "staged install message: $(cat "$TMPDIR/out")"
mk uninstall DESTDIR="$S" PREFIX=/usr/local >"$TMPDIR/out" 2>&1 || fail "staged uninstall"
[ -z "$(left "$S")" ] || fail "left after staged uninstall: $(left "$S")"

# 3. LIBDIR and INCDIR of their own, one outside the prefix.
mk install PREFIX="$T/p" LIBDIR="$T/p/lib64" INCDIR="$T/inc" >"$TMPDIR/out" 2>&1 ||
	fail "install with LIBDIR, INCDIR: $(cat "$TMPDIR/out")"
grep -q '^libdir=${prefix}/lib64$' "$T/p/lib64/pkgconfig/mirai.pc" || fail "libdir under prefix"
grep -q "^includedir=$T/inc\$" "$T/p/lib64/pkgconfig/mirai.pc" || fail "includedir outside prefix"
cflags=$(pc "$T/p/lib64/pkgconfig" --cflags)
[ "${cflags% }" = "-I$T/inc" ] || fail "cflags: $cflags"
mk uninstall PREFIX="$T/p" LIBDIR="$T/p/lib64" INCDIR="$T/inc" >/dev/null 2>&1 || fail "uninstall"
[ -z "$(left "$T")" ] || fail "left after uninstall: $(left "$T")"
echo ok
