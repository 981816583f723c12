#!/bin/bash
#PBS -N mirai-example
#PBS -l nodes=2:ppn=8
#PBS -l walltime=00:10:00
#
# A mirai job for PBS or Torque (OpenPBS: -l select=2:ncpus=8 instead of
# nodes=2:ppn=8).  UNTESTED: there is no PBS on the machines where mirai is
# tested, so this script has never run under a real PBS.
#
# mirai-launch reads the hosts from $PBS_NODEFILE (one line per slot).
# With the default launcher, ssh, it starts a node's servers with one ssh
# exec, so the nodes of the job must accept ssh from each other (most PBS
# sites allow it inside a job).  With MIRAI_LAUNCHER=pbs it starts them all
# with one `pbsdsh -u` instead (Torque's; OpenPBS's pbsdsh has no -u), no
# ssh needed: pbsdsh gives its tasks no standard input, so the servers'
# URLs, which hold secrets, go to an owner-only file in $PBS_O_WORKDIR
# (which the nodes must share), removed once the servers are online.
# --launcher pbs was tested only with a stand-in pbsdsh
# (tests/cli/launch-pbs.sh).
#
#   MIRAI_BIN          directory of the mirai tools (default: the PATH)
#   MIRAI_LAUNCHER     ssh (default) or pbs
#   MIRAI_LAUNCH_ARGS  more mirai-launch options, e.g. --server PATH
set -eu
cd "${PBS_O_WORKDIR:-.}"
bin=${MIRAI_BIN:+$MIRAI_BIN/}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
n=64
for i in $(seq "$n"); do
	echo "echo task $i \$(hostname -s)"
done >"$work/commands"
# shellcheck disable=SC2086 # MIRAI_LAUNCH_ARGS is a list of words
"${bin}mirai-launch" --launcher "${MIRAI_LAUNCHER:-ssh}" -q ${MIRAI_LAUNCH_ARGS:-} \
	-- "${bin}mirai" exec -a "$work/commands"
