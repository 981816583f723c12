#!/usr/bin/env bash
# mirai-launch under a real Slurm: a one-node cluster started here
# (tests/slurm/slurm.sh: munged, slurmctld, slurmd as root, every file in
# a temp dir), scripts/slurm-example.sbatch and scripts/slurm-exec.sbatch
# submitted with sbatch --wait, their output checked, every daemon stopped.
# Exit 77 (skip) with the reason when not root or Slurm cannot start.
set -u
B=${BUILD:-build}/bin
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
W=$(mktemp -d "${TMPDIR:-/tmp}/slurm.XXXXXX")
chmod 755 "$W"
cleanup() {
	"$ROOT/tests/slurm/slurm.sh" stop "$W/slurm" >/dev/null 2>&1
	pkill -9 -f "^$ROOT/$B/mirai-server" 2>/dev/null
	rm -rf "$W"
}
fail() {
	echo "FAIL: $*"
	tail -n 20 "$W"/slurm/log/*.log 2>/dev/null
	cleanup
	exit 1
}
"$ROOT/tests/slurm/slurm.sh" start "$W/slurm" 16 >"$W/env" 2>"$W/err"
rc=$?
if [ $rc = 77 ]; then
	echo "SKIP: no test Slurm here: $(cat "$W/err")"
	cleanup
	exit 77
fi
[ $rc = 0 ] || fail "tests/slurm/slurm.sh: $(cat "$W/err")"
. "$W/env"
export SLURM_CONF
# The node's name may not resolve here: servers dial 127.0.0.1.
export MIRAI_BIN="$ROOT/$B" MIRAI_LAUNCH_ARGS="--server-url ws://127.0.0.1:0"

t0=$(date +%s.%N)
timeout 120 sbatch --wait -N1 -n16 -o "$W/example.out" \
	"$ROOT/scripts/slurm-example.sbatch" >"$W/sbatch.out" 2>&1 ||
	fail "slurm-example.sbatch: $(cat "$W/sbatch.out" "$W/example.out" 2>/dev/null)"
t1=$(date +%s.%N)
cat "$W/example.out"
grep -q '^mirai-example: 64 tasks on 16 servers over 1 node(s): ok$' "$W/example.out" ||
	fail "example output: $(cat "$W/example.out")"
printf 'slurm-example.sbatch: %.1f s\n' "$(echo "$t1 - $t0" | bc -l)"

printf 'echo one\necho two\nexit 3\n' >"$W/commands"
timeout 120 sbatch --wait -N1 -n4 -o "$W/exec.out" \
	"$ROOT/scripts/slurm-exec.sbatch" "$W/commands" >"$W/sbatch.out" 2>&1
rc=$?
[ $rc != 0 ] || fail "slurm-exec.sbatch: a failed command must fail the job"
grep -qx one "$W/exec.out" && grep -qx two "$W/exec.out" ||
	fail "slurm-exec output: $(cat "$W/exec.out")"
sed -i '$d' "$W/commands"
timeout 120 sbatch --wait -N1 -n4 -o "$W/exec.out" \
	"$ROOT/scripts/slurm-exec.sbatch" "$W/commands" >"$W/sbatch.out" 2>&1 ||
	fail "slurm-exec.sbatch: $(cat "$W/sbatch.out" "$W/exec.out")"
[ "$(grep -cx -e one -e two "$W/exec.out")" = 2 ] || fail "slurm-exec output: $(cat "$W/exec.out")"
echo "slurm-exec.sbatch: ok"

"$ROOT/tests/slurm/slurm.sh" stop "$W/slurm"
for _ in $(seq 50); do
	pgrep -f "^$ROOT/$B/mirai-server" >/dev/null || break
	sleep 0.1
done
pgrep -f "^$ROOT/$B/mirai-server" >/dev/null && fail "servers left after the jobs"
cleanup
echo ok
