#!/usr/bin/env bash
# mirai-launch --launcher pbs, and mirai-server --setup-file, against a
# STAND-IN pbsdsh (written below): there is no PBS on the machines where
# mirai is tested, and Debian has no PBS package, so this never ran under
# a real PBS.  Checked: tasks run on servers that the pbsdsh tasks (the
# agents) started, `mirai status` shows them online, -x values and the exit
# status come through, the setup file was 0600 in a 0700 directory of the
# chosen setup directory while it existed and is gone after the launch
# (also after a SIGTERM, during the start and while serving), no secret
# shows in ps, the launch's processes all end (pbsdsh gets a TERM, then a
# KILL, when it stays), each agent keeps its own node's URLs (as root: a
# UTS namespace a node), scripts/pbs-example.sh runs with it, and
# mirai-server refuses a setup file that is open to others, not a regular
# file, a link, or another user's (exit 2).
set -u
B=${BUILD:-build}/bin
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
S=$ROOT/$B/mirai-server
M=$ROOT/$B/mirai
W=$(mktemp -d "${TMPDIR:-/tmp}/pbs.XXXXXX")
# Every process of a launch here carries TAG in its environment (given to
# mirai-launch only, never exported here): the test finds and kills
# exactly its own.
TAG=MIRAI_PBS_TEST=$$
ours() { grep -lzx "$TAG" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3; }
fail() { echo "FAIL: $*"; cleanup; exit 1; }
cleanup() {
	[ -n "${L:-}" ] && kill -9 "$L" 2>/dev/null
	for p in $(ours); do kill -9 "$p" 2>/dev/null; done
	rm -rf "$W"
}
gone() {  # bounded wait for every process of the launches to end
	for _ in $(seq 100); do [ -z "$(ours)" ] && return 0; sleep 0.1; done
	fail "processes left after the launch: $(ours | xargs -r ps -o pid,args -p)"
}
stop() {  # PID SECONDS: TERM the launcher, wait SECONDS at most; its status in rc
	kill -TERM "$1"
	for _ in $(seq $(($2 * 10))); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$1" 2>/dev/null && fail "the launcher outlived a TERM by $2 s"
	wait "$1"
	rc=$?
	L=
}
no_setup() {  # no setup directory left in $1
	[ -z "$(find "$1" -maxdepth 1 -name 'mirai-setup-*')" ] ||
		fail "setup left in $1: $(ls -la "$1"/mirai-setup-*)"
}

mkdir -p "$W/bin" "$W/jobdir" "$W/shared"
# ---- the stand-in ------------------------------------------------------
cat >"$W/bin/pbsdsh" <<'EOF'
#!/usr/bin/env bash
# STAND-IN for PBS's pbsdsh, for tests/cli/launch-pbs.sh only: there is no
# PBS here.  As Torque's `pbsdsh -u` does, it runs the command once per
# unique host of $PBS_NODEFILE, each task with PBS_TASKNUM, PBS_NODENUM and
# PBS_VNODENUM set and no stdin (</dev/null), waits for them all (exit 0),
# and on a TERM, INT or HUP passes it on to the tasks and exits 1.  Unlike
# PBS it runs every task on this machine; with PBSDSH_UTS=1 each in a UTS
# namespace of its own whose host name is the task's host (root only).
# For the test: it writes the setup file's path to $PBSDSH_RECORD.path,
# and the mode, owner and type of the file and its directory to
# $PBSDSH_RECORD; PBSDSH_HOLD=FILE waits (30 s at most) for FILE before
# any task starts; PBSDSH_DEAF=1 ignores TERM, INT and HUP.
set -u
[ -n "${PBS_ENVIRONMENT:-}" ] || { echo "pbsdsh: not executing under PBS" >&2; exit 1; }
[ "${1:-}" = -u ] || { echo "pbsdsh (stand-in): -u only" >&2; exit 1; }
shift
[ "${1:-}" = -- ] && shift
prev=
for a in "$@"; do
	if [ "$prev" = --setup-file ] && [ -n "${PBSDSH_RECORD:-}" ]; then
		echo "$a" >>"$PBSDSH_RECORD.path"
		stat -c '%a %u %F' "$a" "$(dirname "$a")" >>"$PBSDSH_RECORD"
	fi
	prev=$a
done
pids=()
for sig in TERM INT HUP; do
	if [ "${PBSDSH_DEAF:-}" = 1 ]; then
		trap '' $sig
	else
		trap 'kill -'$sig' "${pids[@]}" 2>/dev/null; exit 1' $sig
	fi
done
if [ -n "${PBSDSH_HOLD:-}" ]; then
	for _ in $(seq 300); do [ -e "$PBSDSH_HOLD" ] && break; sleep 0.1; done
fi
n=0
for host in $(awk 'NF && !seen[$1]++ {print $1}' "$PBS_NODEFILE"); do
	if [ "${PBSDSH_UTS:-}" = 1 ]; then
		PBS_TASKNUM=$((n + 1)) PBS_NODENUM=$n PBS_VNODENUM=$n \
			unshare --uts sh -c 'hostname "$0" && exec "$@"' "$host" "$@" </dev/null &
	else
		PBS_TASKNUM=$((n + 1)) PBS_NODENUM=$n PBS_VNODENUM=$n "$@" </dev/null &
	fi
	pids+=($!)
	n=$((n + 1))
done
wait
exit 0
EOF
chmod 755 "$W/bin/pbsdsh"

# A job's environment: 4 slots of this machine, pbsdsh on the PATH, no
# Slurm.  The servers dial 127.0.0.1 (this host's name may resolve to a
# loopback address, which a launch with remote servers refuses).
printf 'localhost\nlocalhost\nlocalhost\nlocalhost\n' >"$W/nodefile"
JOB=(env -u SLURM_JOB_ID -u SLURM_JOB_NODELIST -u SLURM_NODELIST
	-u MIRAI_SETUP_DIR PATH="$W/bin:$PATH" "$TAG"
	PBS_JOBID=42.pbs PBS_ENVIRONMENT=PBS_BATCH PBS_NODEFILE="$W/nodefile"
	PBS_O_WORKDIR="$W/jobdir" PBSDSH_RECORD="$W/record")
LAUNCH=("$B/mirai-launch" --launcher pbs --server "$S" --server-url ws://127.0.0.1:0)
uid=$(id -u)

# ---- the default stays ssh: localhost starts here, not through pbsdsh --
"${JOB[@]}" "$B/mirai-launch" --dry-run >"$W/plan" || fail "dry run in a PBS job"
grep -q '"local":true' "$W/plan" || fail "the default launcher in a PBS job: $(cat "$W/plan")"
"${JOB[@]}" "${LAUNCH[@]}" --dry-run >"$W/plan" || fail "dry run with --launcher pbs"
[ "$(grep -c '"local":false' "$W/plan")" = 4 ] || fail "pbs plan: $(cat "$W/plan")"

# ---- a launch with a command -------------------------------------------
cat >"$W/client.sh" <<EOF
#!/bin/sh
"$M" status --json >"$W/status" || exit 11
"$M" exec 'echo "\$MIRAI_PBS_X task \$PBS_TASKNUM"' >"$W/exec" || exit 12
printf 'echo a\necho b\necho c\necho d\n' | "$M" exec >"$W/farm" || exit 13
ps -eo args >"$W/ps"
exit 7
EOF
chmod 700 "$W/client.sh"
"${JOB[@]}" timeout 60 "${LAUNCH[@]}" -x MIRAI_PBS_X='two words' -- "$W/client.sh" \
	>"$W/out" 2>"$W/err"
rc=$?
[ $rc = 7 ] || fail "exit status $rc, not the command's 7: $(cat "$W/err")"
[ "$(grep -o '"online":1' "$W/status" | wc -l)" = 4 ] || fail "status: $(cat "$W/status")"
[ "$(cat "$W/exec")" = "two words task 1" ] || fail "a task on a server: $(cat "$W/exec")"
[ "$(cat "$W/farm")" = "$(printf 'a\nb\nc\nd')" ] || fail "a list of tasks: $(cat "$W/farm")"
# The setup file: 0600 in a 0700 directory of PBS_O_WORKDIR, ours.
[ "$(cat "$W/record")" = "$(printf '600 %s regular file\n700 %s directory' "$uid" "$uid")" ] ||
	fail "setup file and directory: $(cat "$W/record")"
case "$(cat "$W/record.path")" in
"$W/jobdir/mirai-setup-"??????/setup) ;;
*) fail "setup file not in PBS_O_WORKDIR: $(cat "$W/record.path")" ;;
esac
no_setup "$W/jobdir"
# No slot's secret on any command line (the setup file's path is none).
tokens=$(grep -Eo '/[0-9a-f]{32}/' "$W/status" | tr -d /)
[ "$(echo "$tokens" | wc -w)" = 4 ] || fail "tokens in the status: $(cat "$W/status")"
for t in $tokens; do grep -q "$t" "$W/ps" && fail "a secret in ps: $(grep "$t" "$W/ps")"; done
grep -q -- "--setup-file $W/jobdir/mirai-setup-" "$W/ps" || fail "no agent in ps: $(cat "$W/ps")"
gone
rm -f "$W/record" "$W/record.path"

# ---- serving, then a SIGTERM; MIRAI_SETUP_DIR chooses the directory ----
"${JOB[@]}" env MIRAI_SETUP_DIR="$W/shared" "${LAUNCH[@]}" -q >"$W/urls" 2>"$W/err" &
L=$!
for _ in $(seq 200); do [ "$(grep -c '^wss://' "$W/urls")" = 4 ] && break; sleep 0.1; done
[ "$(grep -c '^wss://' "$W/urls")" = 4 ] || fail "serving: $(cat "$W/urls" "$W/err")"
ps -eo args >"$W/ps"
for t in $(grep '^wss://' "$W/urls" | cut -d/ -f4); do
	[ ${#t} = 32 ] || fail "token: $t"
	grep -q "$t" "$W/ps" && fail "a secret in ps while serving"
done
grep -q "^$W/shared/mirai-setup-" "$W/record.path" || fail "MIRAI_SETUP_DIR not used: $(cat "$W/record.path")"
no_setup "$W/shared"
stop "$L" 15
# Serving without a command ends with 0 on a TERM.
[ $rc = 0 ] || fail "serving, TERM: exit $rc: $(cat "$W/err")"
gone
no_setup "$W/shared"
no_setup "$W/jobdir"
rm -f "$W/record" "$W/record.path"

# ---- scripts/pbs-example.sh with MIRAI_LAUNCHER=pbs ------------------
"${JOB[@]}" timeout 60 env MIRAI_LAUNCHER=pbs MIRAI_BIN="$ROOT/$B" \
	MIRAI_LAUNCH_ARGS="--server $S --server-url ws://127.0.0.1:0" \
	bash "$ROOT/scripts/pbs-example.sh" >"$W/example" 2>"$W/err" ||
	fail "pbs-example.sh: $(cat "$W/err")"
[ "$(grep -c '^task [0-9]* ' "$W/example")" = 64 ] || fail "pbs-example.sh: $(cat "$W/example")"
no_setup "$W/jobdir"
gone
rm -f "$W/record" "$W/record.path"

# ---- a SIGTERM during the start, while the setup file is there ---------
# pbsdsh holds its tasks back: nothing comes online; the TERM ends the
# start at once (within its 60 s), the teardown TERMs pbsdsh (5 s), a deaf
# pbsdsh gets a KILL 2 s later, and the launcher exits 128 + 15.
for deaf in 0 1; do
	"${JOB[@]}" env PBSDSH_HOLD="$W/never" PBSDSH_DEAF=$deaf "${LAUNCH[@]}" -q \
		-- true >/dev/null 2>"$W/err" &
	L=$!
	for _ in $(seq 100); do [ -s "$W/record" ] && break; sleep 0.1; done
	[ -s "$W/record" ] || fail "pbsdsh did not start: $(cat "$W/err")"
	f=$(cat "$W/record.path")
	[ "$(stat -c %a "$f")" = 600 ] || fail "the setup file during the start: $(ls -la "$f")"
	stop "$L" 20
	[ $rc = 143 ] || fail "deaf=$deaf: TERM during the start: exit $rc: $(cat "$W/err")"
	[ -e "$f" ] && fail "deaf=$deaf: the setup file outlived the launch"
	[ -e "$(dirname "$f")" ] && fail "deaf=$deaf: the setup directory outlived the launch"
	gone
	rm -f "$W/record" "$W/record.path"
done

# ---- pbsdsh missing: an error, and no setup left -----------------------
"${JOB[@]}" env PATH=/usr/bin:/bin "${LAUNCH[@]}" -q -- true 2>"$W/err"
[ $? = 1 ] || fail "no pbsdsh: exit"
grep -q "cannot run pbsdsh" "$W/err" || fail "no pbsdsh: $(cat "$W/err")"
no_setup "$W/jobdir"
"${JOB[@]}" "${LAUNCH[@]}" -q --setup-dir "$W/absent" -- true 2>"$W/err"
[ $? = 1 ] || fail "an absent --setup-dir: exit"
grep -q "$W/absent" "$W/err" || fail "an absent --setup-dir: $(cat "$W/err")"
gone

# ---- two nodes: each agent keeps its own node's URLs -------------------
if [ "$uid" = 0 ] && unshare --uts true 2>/dev/null; then
	printf 'pbsnode1\npbsnode1\npbsnode2\npbsnode2\n' >"$W/nodefile"
	cat >"$W/nodes.sh" <<EOF
#!/bin/sh
"$M" status --json >"$W/status" || exit 11
exit 0
EOF
	chmod 700 "$W/nodes.sh"
	"${JOB[@]}" timeout 60 env PBSDSH_UTS=1 "${LAUNCH[@]}" -q -- "$W/nodes.sh" 2>"$W/err" ||
		fail "two nodes: $(cat "$W/err")"
	[ "$(grep -o '"online":1' "$W/status" | wc -l)" = 4 ] || fail "two nodes, status: $(cat "$W/status")"
	[ "$(grep -o '"host":"pbsnode1"' "$W/status" | wc -l)" = 2 ] &&
		[ "$(grep -o '"host":"pbsnode2"' "$W/status" | wc -l)" = 2 ] ||
		fail "two servers a node: $(cat "$W/status")"
	no_setup "$W/jobdir"
	gone
else
	echo "part skipped: two nodes need root and unshare --uts"
fi

# ---- mirai-server --setup-file refuses a loose file --------------------
# A valid setup: one URL for any node, that nothing answers.
{
	printf 'H\x0d\0\0\0mirai-agent/1'
	printf 'U\x15\0\0\0\xff\xff\xff\xfftcp://127.0.0.1:9'
	printf 'Z\0\0\0\0'
} >"$W/setup"
chmod 600 "$W/setup"
timeout 30 "$S" --setup-file "$W/setup" --dial-once -q 2>"$W/err"
[ $? = 1 ] || fail "a 0600 setup file: not read and dialed: $(cat "$W/err")"
refused() {  # WHY FILE: exit 2 with a message naming FILE
	timeout 30 "$S" --setup-file "$2" --dial-once -q 2>"$W/err"
	rc=$?
	[ $rc = 2 ] || fail "$1: exit $rc, not 2: $(cat "$W/err")"
	grep -q "^mirai-server: --setup-file: $2: " "$W/err" || fail "$1: $(cat "$W/err")"
}
for mode in 644 640 604 660 606; do
	chmod "$mode" "$W/setup"
	refused "mode $mode" "$W/setup"
	grep -q "mode 0$mode" "$W/err" || fail "mode $mode: $(cat "$W/err")"
done
chmod 600 "$W/setup"
ln -s "$W/setup" "$W/link"
refused "a link" "$W/link"
refused "a directory" "$W/jobdir"
mkfifo "$W/fifo"
refused "a FIFO" "$W/fifo"
grep -q "not a regular file" "$W/err" || fail "a FIFO: $(cat "$W/err")"
timeout 30 "$S" --setup-file "$W/absent" -q 2>"$W/err"
[ $? = 2 ] || fail "an absent setup file: exit"
"$S" --setup-file "$W/setup" --stdin 2>/dev/null
[ $? = 2 ] || fail "--setup-file with --stdin"
if [ "$uid" = 0 ]; then
	# Root may read it, but it is not root's: another user could have
	# written it.
	chown nobody "$W/setup"
	refused "another user's" "$W/setup"
	grep -q "owned by uid $(id -u nobody)" "$W/err" || fail "another user's: $(cat "$W/err")"
else
	echo "part skipped: another user's setup file needs root (chown)"
fi
gone
cleanup
echo ok
