#!/usr/bin/env bash
# mirai-launch across three hosts: network namespaces this test creates
# (ip netns, veth pairs 10.201.K.1 here <-> 10.201.K.2 there), each with
# its own sshd, removed at the end.  The launcher's dispatcher listens on
# 10.201.1.1, which every namespace reaches through its veth: given as
# the slots' URL, then as the advertised host (the default slots listen
# on its address only).  Exit 77 (skip) with the reason when namespaces
# cannot be made (not root, no ip).
set -u
B=${BUILD:-build}/bin
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
S=$ROOT/$B/mirai-server
tag=$$
W=$(mktemp -d "${TMPDIR:-/tmp}/netns.XXXXXX")
NS=()
skip() { echo "SKIP: $*"; cleanup; exit 77; }
fail() { echo "FAIL: $*"; cleanup; exit 1; }
cleanup() {
	[ -n "${L:-}" ] && kill -9 "$L" 2>/dev/null
	for k in 1 2 3; do
		[ -d "$W/sshd$k" ] && ip netns exec "mt$k-$tag" \
			"$ROOT/tests/sshd/sshd.sh" stop "$W/sshd$k" >/dev/null 2>&1
	done
	for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null; done
	# ip netns add mounts /run/netns on itself; undo it if we caused it
	# and no namespace is left there (a chroot cannot go while it stays).
	if [ "${netns_mounted:-1}" = 0 ] && [ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
		for _ in 1 2; do
			mountpoint -q /run/netns && umount /run/netns 2>/dev/null
		done
	fi
	pkill -9 -f "^$S" 2>/dev/null
	rm -rf "$W"
}
left() { pgrep -f "^$S" | wc -l; }

[ "$(id -u)" = 0 ] || skip "network namespaces need root"
command -v ip >/dev/null || skip "no ip command (iproute2)"
netns_mounted=0
mountpoint -q /run/netns 2>/dev/null && netns_mounted=1
for k in 1 2 3; do
	ns="mt$k-$tag"
	ip netns add "$ns" 2>"$W/err" || skip "ip netns add: $(cat "$W/err")"
	NS+=("$ns")
	ip link add "mv$k-$tag" type veth peer name eth0 netns "$ns" ||
		skip "veth pairs cannot be made here"
	ip addr add "10.201.$k.1/24" dev "mv$k-$tag"
	ip link set "mv$k-$tag" up
	ip netns exec "$ns" ip addr add "10.201.$k.2/24" dev eth0
	ip netns exec "$ns" ip link set eth0 up
	ip netns exec "$ns" ip link set lo up
	ip netns exec "$ns" ip route add default via "10.201.$k.1"
	mkdir "$W/sshd$k"
	ip netns exec "$ns" env SSHD_ADDRS="10.201.$k.2" \
		"$ROOT/tests/sshd/sshd.sh" start "$W/sshd$k" $$ >"$W/env$k" 2>"$W/err" ||
		skip "no sshd here: $(cat "$W/err")"
	. "$W/env$k"
	cat "$SSHD_CONFIG" >>"$W/ssh_config"
	echo "10.201.$k.2 slots=2" >>"$W/hosts"
done

SSH=(--ssh-config "$W/ssh_config" --server "$S" --server-url ws://10.201.1.1:0)
out=$("$B/mirai-launch" --hostfile "$W/hosts" "${SSH[@]}" --report-bindings -q \
	-- sh -c "'$B/mirai' status --json; for i in 1 2 3 4 5 6; do '$B/mirai' exec 'hostname -I'; done") ||
	fail "launch on three hosts: $out"
[ "$(echo "$out" | grep -c '^10\.201\.[123]\.2 slot')" = 6 ] || fail "bindings: $out"
status=$(echo "$out" | grep '^{')
[ "$(echo "$status" | grep -o '"online":1' | wc -l)" = 6 ] || fail "6 online: $status"
# Each server reached the dispatcher from its own namespace.
for k in 1 2 3; do
	echo "$status" | grep -q "wss://10.201.1.1:[0-9]*/[0-9a-f]*/$((2 * k - 1))" ||
		fail "slot URLs: $status"
done
echo "$out" | grep -Eq '^10\.201\.[123]\.2 *$' || fail "exec ran in a namespace: $out"
for _ in $(seq 50); do [ "$(left)" = 0 ] && break; sleep 0.1; done
[ "$(left)" = 0 ] || fail "servers left after the launch"

# The default slots listen on the advertised address only, not on the
# other namespaces' links (10.201.2.1, 10.201.3.1) nor anywhere else; the
# servers of every namespace reach them there.
out=$("$B/mirai-launch" --hostfile "$W/hosts" --ssh-config "$W/ssh_config" --server "$S" \
	--advertise 10.201.1.1 -q -- sh -c "ss -Hltnp | grep \"pid=\$PPID,\" | awk '{print \"listen \" \$4}'; '$B/mirai' status --json") ||
	fail "launch with --advertise: $out"
[ "$(echo "$out" | grep -o '"online":1' | wc -l)" = 6 ] ||
	fail "6 online with --advertise: $out"
echo "$out" | grep -q '^listen ' || fail "no listener found: $out"
echo "$out" | grep '^listen ' | grep -v '^listen 10\.201\.1\.1:[0-9]*$' &&
	fail "listening beyond 10.201.1.1: $out"
for _ in $(seq 50); do [ "$(left)" = 0 ] && break; sleep 0.1; done
[ "$(left)" = 0 ] || fail "servers left after the --advertise launch"

# kill -9 of the launcher: nothing is left on any host.
"$B/mirai-launch" --hostfile "$W/hosts" "${SSH[@]}" -q >/dev/null 2>&1 &
L=$!
for _ in $(seq 100); do [ "$(pgrep -f "^$S --bind-to" | wc -l)" = 6 ] && break; sleep 0.1; done
[ "$(pgrep -f "^$S --bind-to" | wc -l)" = 6 ] || fail "6 servers up"
kill -9 "$L"; wait "$L" 2>/dev/null; L=
for _ in $(seq 50); do [ "$(left)" = 0 ] && break; sleep 0.1; done
[ "$(left)" = 0 ] || fail "servers left after kill -9 of the launcher"
cleanup
echo ok
