#!/usr/bin/env bash
# A throwaway sshd for the ssh tests, on 127.0.0.1, 127.0.0.2 and 127.0.0.3
# (SSHD_ADDRS="a b ..." listens on other addresses, e.g. inside a network
# namespace).
#
#   sshd.sh start DIR [OWNER-PID]   start it; print shell assignments:
#       SSHD_PORT=port it listens on (a free one it found)
#       SSHD_KEY=DIR/id_ed25519 (a user key it accepts)
#       SSHD_KNOWN_HOSTS=DIR/known_hosts (its host key, for both addresses)
#       SSHD_CONFIG=DIR/ssh_config (client config: Port, IdentityFile and
#           UserKnownHostsFile for both addresses)
#       SSHD_PID=its process id
#     With OWNER-PID, sshd is also stopped when that process ends, so that
#     a test killed half-way leaves nothing running.
#   sshd.sh stop DIR                stop it (DIR itself is left alone)
#
# Every file lives in DIR; ~/.ssh and the system's files are not touched,
# except that /run/sshd (sshd's privilege separation directory) is created
# when running as root and it is missing.  Exit status 77 (skip) with a
# message on stderr when sshd cannot run here; 2 for a bad command line.
set -u

die() { echo "sshd.sh: $*" >&2; exit 2; }
skip() { echo "sshd.sh: cannot run a test sshd: $*" >&2; exit 77; }

[ $# -ge 2 ] || die "usage: sshd.sh start|stop DIR [OWNER-PID]"
cmd=$1 dir=$2 owner=${3:-}
# Paths go unquoted into sshd's config and the printed assignments.
case $dir in
/*) ;;
*) die "DIR must be an absolute path" ;;
esac
case $dir in
*[!A-Za-z0-9_./-]*) die "DIR may hold only letters, digits and _ . / -" ;;
esac

# Whether process $1 runs (a zombie does not) and is an sshd.
is_sshd() {
	local stat
	[ -r "/proc/$1/stat" ] || return 1
	stat=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	[ "${stat%% *}" != Z ] || return 1
	tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q sshd
}

stop() {
	local pid n
	if [ -f "$dir/watch.pid" ]; then
		kill "$(cat "$dir/watch.pid")" 2>/dev/null
		rm -f "$dir/watch.pid"
	fi
	[ -f "$dir/harness.pid" ] || return 0
	pid=$(cat "$dir/harness.pid")
	rm -f "$dir/harness.pid"
	is_sshd "$pid" || return 0
	kill "$pid" 2>/dev/null
	for n in $(seq 100); do
		is_sshd "$pid" || return 0
		sleep 0.05
	done
	kill -KILL "$pid" 2>/dev/null
	return 0
}

case $cmd in
stop)
	stop
	exit 0
	;;
start) ;;
*) die "unknown command $cmd (start or stop)" ;;
esac

sshd=$(command -v sshd 2>/dev/null)
[ -n "$sshd" ] || [ ! -x /usr/sbin/sshd ] || sshd=/usr/sbin/sshd
[ -n "$sshd" ] ||
	skip "sshd is not installed (openssh-server; see scripts/deps)"
command -v ssh-keygen >/dev/null 2>&1 || skip "ssh-keygen is not installed"
case $sshd in
/*) ;;
*) sshd=$(cd "$(dirname "$sshd")" && pwd)/$(basename "$sshd") ;;
esac
if [ "$(id -u)" -eq 0 ] && [ ! -d /run/sshd ]; then
	mkdir -m 0755 /run/sshd 2>/dev/null || skip "cannot create /run/sshd"
fi
mkdir -p "$dir" || skip "cannot create $dir"
[ -f "$dir/harness.pid" ] && is_sshd "$(cat "$dir/harness.pid")" &&
	die "an sshd already runs for $dir (stop it first)"

rm -f "$dir/host_ed25519" "$dir/host_ed25519.pub" "$dir/id_ed25519" \
	"$dir/id_ed25519.pub"
ssh-keygen -q -t ed25519 -N '' -C mirai-test-host -f "$dir/host_ed25519" \
	</dev/null >/dev/null 2>&1 || skip "ssh-keygen failed"
ssh-keygen -q -t ed25519 -N '' -C mirai-test-user -f "$dir/id_ed25519" \
	</dev/null >/dev/null 2>&1 || skip "ssh-keygen failed"
cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
chmod 600 "$dir/authorized_keys"

# Whether something listens on address $1, port $2.
listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
# Whether sshd has logged $1.
logged() { grep -q "$1" "$dir/sshd.log"; }

# Remote commands get the usual PATH (sshd's own lacks the sbin folders);
# binaries given by absolute path run whatever it holds.  SHLVL=1 keeps
# bash from reading the user's ~/.bashrc, which it does for a command run
# by sshd: a developer's startup files (pyenv, conda...) would otherwise
# take part in every test, and some run slow or block under 20 parallel
# logins.
path=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin
addrs=${SSHD_ADDRS:-127.0.0.1 127.0.0.2 127.0.0.3}
started=""
for try in $(seq 20); do
	port=$((20000 + RANDOM % 40000))
	busy=""
	for a in $addrs; do listening "$a" "$port" && busy=1; done
	[ -n "$busy" ] && continue
	# MaxAuthTries is high because a developer's ssh agent may offer
	# many keys before the test key; MaxSessions stays at its default
	# (10), which the tests go beyond on purpose.
	cat >"$dir/sshd_config" <<-EOF
		Port $port
		$(for a in $addrs; do echo "ListenAddress $a"; done)
		HostKey $dir/host_ed25519
		PidFile $dir/sshd.pid
		AuthorizedKeysFile $dir/authorized_keys
		PermitRootLogin prohibit-password
		PubkeyAuthentication yes
		PasswordAuthentication no
		KbdInteractiveAuthentication no
		UsePAM no
		StrictModes no
		PrintMotd no
		X11Forwarding no
		AllowTcpForwarding no
		MaxStartups 64
		MaxAuthTries 30
		LogLevel VERBOSE
		SetEnv PATH=$path SHLVL=1
	EOF
	: >"$dir/sshd.log"
	# -D keeps it from forking, so $! is sshd itself; -E sends its log
	# to the file.  No descriptor of the caller stays open in it.
	"$sshd" -D -f "$dir/sshd_config" -E "$dir/sshd.log" \
		</dev/null >/dev/null 2>&1 &
	pid=$!
	echo "$pid" >"$dir/harness.pid"
	for n in $(seq 100); do
		all=1
		for a in $addrs; do
			logged "listening on $a port $port" || all=""
		done
		if [ -n "$all" ]; then
			started=1
			break
		fi
		logged "Address already in use" && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	[ -n "$started" ] && break
	stop
	logged "Address already in use" && continue
	skip "sshd did not start: $(tail -n 3 "$dir/sshd.log" | tr '\n' ' ')"
done
[ -n "$started" ] || skip "no free port found"

hostkey=$(cut -d' ' -f1,2 "$dir/host_ed25519.pub")
for a in $addrs; do
	echo "[$a]:$port $hostkey"
done >"$dir/known_hosts"
cat >"$dir/ssh_config" <<-EOF
	Host $addrs
	    Port $port
	    IdentityFile $dir/id_ed25519
	    UserKnownHostsFile $dir/known_hosts
	    StrictHostKeyChecking yes
	    BatchMode yes
EOF

if [ -n "$owner" ]; then
	# tail waits for the owner to end; a TERM from stop ends tail too.
	(
		trap 'kill "$t" 2>/dev/null; exit 0' TERM
		tail --pid="$owner" -f /dev/null &
		t=$!
		wait "$t"
		is_sshd "$pid" && kill "$pid"
	) </dev/null >/dev/null 2>&1 &
	echo $! >"$dir/watch.pid"
fi

echo "SSHD_PORT=$port"
echo "SSHD_KEY=$dir/id_ed25519"
echo "SSHD_KNOWN_HOSTS=$dir/known_hosts"
echo "SSHD_CONFIG=$dir/ssh_config"
echo "SSHD_PID=$pid"
