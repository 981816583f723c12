#!/usr/bin/env bash
# The example client: the README's main job.
set -u
B=${BUILD:-build}
out=$("$B/examples/hello" 2>&1) || { echo "FAIL: hello exited $?: $out"; exit 1; }
for want in "daemons: 2 local servers" "echo 7 -> task 7" '"pid":' \
    "exec -> status 3, stdout hello from" "error 5 (timed out)" '"dispatcher":true' \
    '"connections":1' '"instance":1'; do
	case "$out" in *"$want"*) ;; *) echo "FAIL: missing '$want' in: $out"; exit 1 ;; esac
done
# The README's main job: the launcher on hosts.example runs the example.
out=$("$B/bin/mirai-launch" --hostfile hosts.example -q -- "$B/examples/hello" 2>&1) ||
	{ echo "FAIL: make demo's command exited $?: $out"; exit 1; }
for want in "attached to the launcher's dispatcher" "echo 7 -> task 7" \
    "error 5 (timed out)" '"dispatcher":true' '"binding":"core'; do
	case "$out" in *"$want"*) ;; *) echo "FAIL: missing '$want' in: $out"; exit 1 ;; esac
done
echo ok
