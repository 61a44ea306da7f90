#!/usr/bin/env bash
# The kv workload on one table cut into SPLITS ranges (default 64; 0 for one range) on a
# 3-node cluster, with a system-wide CPU profile of 8 s of the run in $PERF (default
# /tmp/perf.data; read it with `perf report -i $PERF --no-children --sort symbol`).
# Prints writes/s, p99 in ms, and errors by SQLSTATE.
#
#   SPLITS=64 bench/ranges_profile.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PERF=${PERF:-/tmp/perf.data}
source bench/lib.sh
start_cairn_cluster 27750
URL="postgresql://root@127.0.0.1:27771/defaultdb?sslmode=disable"
"$CAIRN" workload init kv --url "$URL" --splits "${SPLITS:-64}" >/dev/null
"$CAIRN" workload run kv --url "$URL" --concurrency 32 --duration 25 --value-bytes 256 --json >"$work/sum.json" &
wl=$!
sleep 8
perf record -a -g -o "$PERF" -- sleep 8 >/dev/null 2>&1 || echo "perf record failed" >&2
wait "$wl"
python3 - "$work/sum.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
o = s["ops"][0]
print(f"writes/s {o['ops_per_sec']:.0f}  p99 {o['p99_ms']:.1f} ms  errors {s['errors']}")
PY
