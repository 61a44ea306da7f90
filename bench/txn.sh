#!/usr/bin/env bash
# Two-key write transactions on a 3-node cluster (separate processes, fsync on): both
# keys in one range (one-phase commit: one Raft command) against one key in each of two
# ranges (two-phase commit), at 1 and 16 concurrent clients, in one run. Prints one line
# per kind and concurrency, then the 2-range/1-range ratios.
#
#   bench/txn.sh [duration-seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-15}
source bench/lib.sh
start_cairn_cluster 27650

echo "# $(date -u +%FT%TZ), $(nproc) cores, ${DURATION}s per kind, 256-byte values, fsync on"
results="$work/results.jsonl"
for c in 1 16; do
  "$CAIRN" bench txn --host 127.0.0.1:27651 --concurrency "$c" --duration "$DURATION" --json \
    | tee -a "$results"
done
python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {(r["target"], r["concurrency"]): r for r in rows}
print()
print("| clients | 1-range txn/s | 2-range txn/s | 1-range p50 / p99 ms | 2-range p50 / p99 ms | 2-range/1-range p50 |")
print("|---|---|---|---|---|---|")
for c in sorted({r["concurrency"] for r in rows}):
    a, b = by[("cairn-txn-1-range", c)], by[("cairn-txn-2-range", c)]
    print(f'| {c} | {a["ops_per_sec"]:.0f} | {b["ops_per_sec"]:.0f} '
          f'| {a["p50_ms"]:.2f} / {a["p99_ms"]:.2f} | {b["p50_ms"]:.2f} / {b["p99_ms"]:.2f} '
          f'| {b["p50_ms"]/a["p50_ms"]:.2f}x |')
PY
