#!/usr/bin/env bash
# Put throughput and latency: a 3-node Cairn cluster against a 3-member etcd 3.4 on the
# same machine, in one run, both with fsync on, 256-byte values, at 1 and 32 concurrent
# writers. Prints one line per target and concurrency, then the ratios.
#
#   bench/kv_vs_etcd.sh [duration-seconds]
#
# Needs etcd (Debian's etcd-server, installed if missing, as root) and builds Cairn in
# release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-15}
if ! command -v etcd >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null
fi
source bench/lib.sh

# Cairn: three node processes, one store each (rpc 27451-3).
start_cairn_cluster 27450

# etcd: three members.
start_etcd_cluster

echo "# $(date -u +%FT%TZ), $(nproc) cores, ${DURATION}s per target, 256-byte values, fsync on"
results="$work/results.jsonl"
for c in 1 32; do
  "$CAIRN" bench kv-put --host 127.0.0.1:27451 --etcd "$leader" --concurrency "$c" \
    --duration "$DURATION" --value-bytes 256 --json | tee -a "$results"
done
python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {(r["target"], r["concurrency"]): r for r in rows}
print()
print("| writers | Cairn puts/s | etcd puts/s | Cairn/etcd | Cairn p50 / p99 ms | etcd p50 / p99 ms |")
print("|---|---|---|---|---|---|")
for c in sorted({r["concurrency"] for r in rows}):
    a, b = by[("cairn", c)], by[("etcd", c)]
    print(f'| {c} | {a["ops_per_sec"]:.0f} | {b["ops_per_sec"]:.0f} | {a["ops_per_sec"]/b["ops_per_sec"]:.2f}x '
          f'| {a["p50_ms"]:.2f} / {a["p99_ms"]:.2f} | {b["p50_ms"]:.2f} / {b["p99_ms"]:.2f} |')
PY
