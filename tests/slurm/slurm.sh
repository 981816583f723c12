#!/usr/bin/env bash
# A throwaway one-node Slurm cluster for the tests, as root, everything in
# DIR: munged with a generated key, slurmctld and slurmd on private ports,
# no systemd, no cgroups, nothing in /etc (see DESIGN.md, "A real Slurm in
# the tests").  The node is this machine, named `hostname -s`, with CPUS
# CPUs (default 16, more than it may have: config_overrides).
#
#   slurm.sh start DIR [CPUS]   start it; print shell assignments:
#       SLURM_CONF=DIR/slurm.conf (export it for sbatch, srun, squeue ...)
#       SLURM_TEST_NODE=the node's name
#   slurm.sh stop DIR           stop every daemon it started (bounded)
#
# Exit status 77 (skip) with a message on stderr when Slurm cannot run here
# (not root, not installed: scripts/deps installs it); 2 for a bad command
# line.  Installs nothing.
set -u
export PATH="$PATH:/usr/sbin:/sbin"
die() { echo "slurm.sh: $*" >&2; exit 2; }
skip() { echo "slurm.sh: cannot run a test Slurm: $*" >&2; stop; exit 77; }

[ $# -ge 2 ] || die "usage: slurm.sh start|stop DIR [CPUS]"
cmd=$1 dir=$2 cpus=${3:-16}
case $dir in
/*) ;;
*) die "DIR must be an absolute path" ;;
esac
case $dir in
*[!A-Za-z0-9_./-]*) die "DIR may hold only letters, digits and _ . / -" ;;
esac

# Stop the daemon whose pid is in file $1: TERM, then KILL after 2 s.
stop_one() {
	local pid n
	[ -f "$1" ] || return 0
	pid=$(cat "$1")
	rm -f "$1"
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null || return 0
	for n in $(seq 40); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.05
	done
	kill -KILL "$pid" 2>/dev/null
	return 0
}

stop() {
	stop_one "$dir/run/slurmd.started"
	stop_one "$dir/run/slurmctld.started"
	stop_one "$dir/run/munged.started"
}

case $cmd in
stop)
	stop
	exit 0
	;;
start) ;;
*) die "unknown command $cmd (start or stop)" ;;
esac

[ "$(id -u)" = 0 ] || skip "not root (the daemons run as root here)"
for p in munged slurmctld slurmd sbatch srun sinfo; do
	command -v "$p" >/dev/null 2>&1 ||
		skip "$p is not installed (slurmctld slurmd slurm-client munge: scripts/deps)"
done
node=$(hostname -s)
mkdir -p "$dir/munge-etc" "$dir/munge-run" "$dir/munge-log" "$dir/state" \
	"$dir/spool" "$dir/log" "$dir/run" || skip "cannot create $dir"
# munged wants its key folder private and its socket folder open.
chmod 700 "$dir/munge-etc" "$dir/munge-log"
chmod 755 "$dir" "$dir/munge-run"
dd if=/dev/urandom of="$dir/munge-etc/munge.key" bs=1024 count=1 2>/dev/null
chmod 400 "$dir/munge-etc/munge.key"
sock=$dir/munge-run/munge.socket
# --force: DIR may sit in a private temp dir (the test runner's), which
# munged would refuse as a socket path not every user can reach; here only
# root uses it.
munged --key-file="$dir/munge-etc/munge.key" --socket="$sock" \
	--pid-file="$dir/run/munged.pid" --log-file="$dir/munge-log/munged.log" \
	--seed-file="$dir/munge-etc/seed" -F --force </dev/null >"$dir/log/munged.out" 2>&1 &
echo $! >"$dir/run/munged.started"
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || skip "munged did not start: $(tail -n 3 "$dir/log/munged.out" "$dir/munge-log/munged.log" 2>/dev/null | tr '\n' ' ')"

# Whether something listens on 127.0.0.1 port $1.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 20); do
	p1=$((20000 + RANDOM % 40000))
	p2=$((p1 + 1))
	listening "$p1" || listening "$p2" || break
done
cat >"$dir/slurm.conf" <<-CONF
	ClusterName=miraitest
	SlurmctldHost=$node(127.0.0.1)
	SlurmUser=root
	SlurmdUser=root
	SlurmctldPort=$p1
	SlurmdPort=$p2
	AuthType=auth/munge
	CredType=cred/munge
	AuthInfo=socket=$sock
	StateSaveLocation=$dir/state
	SlurmdSpoolDir=$dir/spool
	SlurmctldPidFile=$dir/run/slurmctld.pid
	SlurmdPidFile=$dir/run/slurmd.pid
	SlurmctldLogFile=$dir/log/slurmctld.log
	SlurmdLogFile=$dir/log/slurmd.log
	ProctrackType=proctrack/linuxproc
	TaskPlugin=task/none
	JobAcctGatherType=jobacct_gather/none
	AccountingStorageType=accounting_storage/none
	JobCompType=jobcomp/none
	SchedulerType=sched/backfill
	SelectType=select/cons_tres
	SelectTypeParameters=CR_CPU
	SlurmdParameters=config_overrides
	MailProg=/bin/true
	MinJobAge=2
	ReturnToService=2
	NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
	PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$dir/slurm.conf
slurmctld -D -i -f "$SLURM_CONF" </dev/null >"$dir/log/slurmctld.out" 2>&1 &
echo $! >"$dir/run/slurmctld.started"
slurmd -D -N "$node" -f "$SLURM_CONF" </dev/null >"$dir/log/slurmd.out" 2>&1 &
echo $! >"$dir/run/slurmd.started"
state=""
for _ in $(seq 150); do
	state=$(sinfo -h -n "$node" -o %t 2>/dev/null)
	[ "$state" = idle ] && break
	sleep 0.1
done
[ "$state" = idle ] || skip "the node is not idle ('$state'): $(tail -n 3 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" 2>/dev/null | tr '\n' ' ')"
echo "SLURM_CONF=$SLURM_CONF"
echo "SLURM_TEST_NODE=$node"
