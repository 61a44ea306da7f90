#!/usr/bin/env bash
# What idle ranges cost: CPU of a 3-node cluster (separate processes) with 1 range, then
# with N more idle ranges (no data, no requests) replicated on all three nodes.
#
#   bench/idle_ranges.sh [ranges=1000] [seconds=30]
set -euo pipefail
cd "$(dirname "$0")/.."
RANGES=${1:-1000}
SECONDS_MEASURED=${2:-30}
source bench/lib.sh
start_cairn_cluster 27550

# CPU seconds (user + system) of a process, from /proc.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
measure() {
  local label=$1 before=() after=()
  for p in "${pids[@]}"; do before+=("$(cpu "$p")"); done
  sleep "$SECONDS_MEASURED"
  for p in "${pids[@]}"; do after+=("$(cpu "$p")"); done
  local total=0 line="$label:"
  for i in 0 1 2; do
    pct=$(python3 -c "print(round(100*(${after[$i]}-${before[$i]})/$SECONDS_MEASURED, 1))")
    line="$line n$((i+1)) ${pct}%"
    total=$(python3 -c "print(round($total+$pct, 1))")
  done
  echo "$line, total ${total}% of one core"
}
echo "# $(date -u +%FT%TZ), $(nproc) cores, ${SECONDS_MEASURED}s per measurement"
measure "1 range"
start=$(date +%s.%N)
"$CAIRN" debug idle-ranges --host 127.0.0.1:27551 --count "$RANGES"
echo "created in $(python3 -c "print(round($(date +%s.%N)-$start, 1))") s"
sleep 10
measure "$((RANGES + 1)) ranges"
