#!/usr/bin/env bash
# mirai-launch at a terminal: a pty made by script(1).  The client command
# runs as the terminal's foreground group, so it reads the terminal (it
# was stopped by SIGTTIN before) and ^C reaches it, not the launcher;
# under an interactive bash, ^Z stops the launcher with it and fg resumes
# both.  Exit 77 (skip) with the reason when script(1) is missing.
set -u
B=${BUILD:-build}/bin
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
S=$ROOT/$B/mirai-server
L=$ROOT/$B/mirai-launch
W=$(mktemp -d "${TMPDIR:-/tmp}/tty.XXXXXX")
fail() { echo "FAIL: $*"; cleanup; exit 1; }
cleanup() {
	# The launchers (each wrote its pid before its exec); their command
	# and servers end with them (PR_SET_PDEATHSIG, the dropped links).
	for f in "$W"/pid.*; do
		[ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
	done
	rm -rf "$W"
}
command -v script >/dev/null || { echo "SKIP: no script(1) to make a pty"; rm -rf "$W"; exit 77; }

# Wait (bounded) for a file, then write the rest of the arguments.
after() {
	local f=$1
	shift
	for _ in $(seq 200); do [ -e "$f" ] && break; sleep 0.05; done
	sleep 0.3
	printf "$@"
}
# The launch inside the pty, named by a tag: its pid goes to pid.TAG.
launch() {
	local tag=$1
	shift
	printf '%q ' sh -c "echo \$\$ >'$W/pid.$tag'; exec \"\$@\"" sh \
		"$L" --host localhost:1 --server "$S" -q -- "$@"
}

# The command reads a line from the terminal.
{ after "$W/ready.read" 'hello\n'; sleep 2; } |
	timeout 30 script -qec "$(launch read sh -c "touch '$W/ready.read'; read x; echo got \$x; exit 3"); echo rc=\$?" \
	/dev/null >"$W/read.out" 2>&1
grep -q '^got hello' "$W/read.out" || fail "no line read from the terminal: $(cat "$W/read.out")"
grep -q '^rc=3' "$W/read.out" || fail "exit status: $(cat "$W/read.out")"

# ^C goes to the command (which traps it and exits 5); the launcher,
# not signalled, exits with the command's status.
{ after "$W/ready.int" '\003'; sleep 2; } |
	timeout 30 script -qec "$(launch int sh -c "trap 'echo INT; exit 5' INT; touch '$W/ready.int'; read x"); echo rc=\$?" \
	/dev/null >"$W/int.out" 2>&1
grep -q '^rc=5' "$W/int.out" || fail "^C: $(cat "$W/int.out")"

# ^Z under job control: the job stops, fg resumes it, and the command
# still reads the terminal.
{
	sleep 1
	printf '%s\n' "$(launch stop sh -c "touch '$W/ready.stop'; read x; echo got \$x")"
	after "$W/ready.stop" '\032'
	sleep 1
	printf 'jobs\n'
	sleep 0.5
	printf 'fg\n'
	sleep 1
	printf 'again\n'
	sleep 1.5
	printf 'exit\n'
	sleep 0.5
} | timeout 40 script -qec "env PS1='$ ' bash --norc --noprofile -i" /dev/null >"$W/stop.out" 2>&1
grep -q 'Stopped' "$W/stop.out" || fail "^Z did not stop the job: $(cat "$W/stop.out")"
grep -q '^got again' "$W/stop.out" || fail "fg: $(cat "$W/stop.out")"

# Nothing left running.
for f in "$W"/pid.*; do
	for _ in $(seq 50); do kill -0 "$(cat "$f")" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$(cat "$f")" 2>/dev/null && fail "a launcher ($(basename "$f")) is still running"
done
cleanup
echo ok
