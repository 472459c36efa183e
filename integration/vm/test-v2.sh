#!/usr/bin/env bash
# Runs the integration tests that exercise cgroups in a guest with pure
# cgroup v2 (this machine's own cgroups are hybrid). Extra arguments are test
# filters; the default is the cgroup suite and the lifecycle basics.
set -euo pipefail
cd "$(dirname "$0")/../.."

integration/vm/setup.sh
# The test binary's path, as cargo reports it.
bin=$(cargo test --test integration --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "integration":
        print(m["executable"])')
[ -n "$bin" ] || { echo "test-v2: no integration test binary" >&2; exit 1; }
# The guest sees target/ at the same path; target/tmp is its own tmpfs so
# that guest and host runs never clean up each other's files.
filters=("$@")
[ ${#filters[@]} -gt 0 ] || filters=(cgroups lifecycle::create_start lifecycle::delete)
status=0
for f in "${filters[@]}"; do
  integration/vm/run-in-vm.sh --share "$PWD/target" --tmpfs "$PWD/target/tmp" --timeout 1500 -- \
    "$bin" --test-threads=2 "$f" || status=$?
done
exit $status
