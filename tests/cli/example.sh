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
echo ok
