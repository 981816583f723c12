#!/usr/bin/env bash
# Runs the test layers against the build in $BUILD (default build/):
#   fast   unit, integration, CLI, fuzz smoke, exported symbols
#   all    fast, then the same under ASan+UBSan (build-san/) and the unit
#          and selected integration tests under valgrind
# Every test runs in its own process with a time limit; logs go to
# $BUILD/test-logs/.  Exit status: 0 if everything passed.
set -u
mode=${1:-all}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BUILD=${BUILD:-build}
FUZZ_SECONDS=${FUZZ_SECONDS:-3}
pass=0
skipped=0
failed=()

run_one() {  # NAME LIMIT_SECONDS COMMAND...
	local name=$1 limit=$2 log
	shift 2
	log="$BUILD/test-logs/$name.log"
	mkdir -p "$(dirname "$log")"
	local t0=$SECONDS rc
	timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
	rc=$?
	if [ $rc = 0 ]; then
		pass=$((pass + 1))
		printf 'PASS  %-40s %3ds\n' "$name" $((SECONDS - t0))
	elif [ $rc = 77 ]; then
		# A test that cannot run here says why; never a silent pass.
		skipped=$((skipped + 1))
		printf 'SKIP  %-40s %s\n' "$name" "$(grep -m1 SKIP "$log")"
	else
		failed+=("$name")
		printf 'FAIL  %-40s %3ds  (log: %s)\n' "$name" $((SECONDS - t0)) "$log"
		tail -n 30 "$log" | sed 's/^/      /'
	fi
}

layers() {  # BUILD-DIR PREFIX [WRAPPER...]
	local b=$1 prefix=$2
	shift 2
	export MIRAI_SERVER="$root/$b/bin/mirai-server" MIRAI_TEST_BUILD="$root/$b"
	for t in "$b"/tests/test_*; do
		[ -x "$t" ] || continue
		run_one "$prefix$(basename "$t")" 300 "$@" "$t"
	done
	for t in "$b"/tests/it_*; do
		[ -x "$t" ] || continue
		run_one "$prefix$(basename "$t")" 300 "$@" "$t"
	done
}

fuzz_smoke() {  # BUILD-DIR PREFIX
	local b=$1 prefix=$2
	for t in "$b"/tests/fuzz_*; do
		[ -x "$t" ] || continue
		local name=${t##*/fuzz_}
		run_one "${prefix}fuzz_$name" 120 "$t" -seconds "$FUZZ_SECONDS" \
		    "tests/fuzz/corpus/$name"
	done
}

export TMPDIR
TMPDIR=$(mktemp -d)
trap 'rm -rf "$TMPDIR"' EXIT

echo "== unit, integration ($BUILD)"
layers "$BUILD" ""
echo "== command-line tools"
for t in tests/cli/*.sh; do
	run_one "cli/$(basename "$t" .sh)" 300 env BUILD="$BUILD" bash "$t"
done
echo "== soak (${SOAK_SECONDS:-20}s: servers killed, stopped, restarted, the network cut, under load)"
run_one soak 300 "$BUILD/tests/soak" "${SOAK_SECONDS:-20}"
# A soak without its network cuts still passes; say why they were skipped.
grep -o 'network cuts skipped: [^;]*' "$BUILD/test-logs/soak.log" 2>/dev/null |
	sed 's/^/      /'
echo "== fuzz smoke (${FUZZ_SECONDS}s each)"
fuzz_smoke "$BUILD" ""
echo "== exported symbols"
run_one symbols 30 bash -c "! nm -D --defined-only '$BUILD/lib/libmirai.so' | awk '{print \$3}' | grep -v '^mirai_'"

if [ "$mode" = all ]; then
	echo "== sanitizers (address, undefined) in ${SANBUILD:-build-san}/"
	SAN=${SANBUILD:-build-san}
	if make -s SANITIZE=address,undefined BUILD="$SAN" tests >"$BUILD/test-logs/build-san.log" 2>&1; then
		export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
		export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
		export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0"
		layers "$SAN" "san/"
		fuzz_smoke "$SAN" "san/"
		unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
	else
		failed+=("build-san")
		echo "FAIL  sanitizer build (log: $BUILD/test-logs/build-san.log)"
	fi
	echo "== valgrind"
	export MIRAI_SERVER="$root/$BUILD/bin/mirai-server" MIRAI_TEST_BUILD="$root/$BUILD"
	vg=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
	    --suppressions="$root/tests/valgrind.supp")
	for t in "$BUILD"/tests/test_* "$BUILD"/tests/it_hook "$BUILD"/tests/it_oneshot; do
		[ -x "$t" ] || continue
		run_one "valgrind/$(basename "$t")" 600 "${vg[@]}" "$t"
	done
fi

echo
echo "passed: $pass, skipped: $skipped, failed: ${#failed[@]}"
if [ ${#failed[@]} -gt 0 ]; then
	printf '  %s\n' "${failed[@]}"
	exit 1
fi
