#!/usr/bin/env bash
# The range-splitting load test: one table grows from 1 range to at least $TARGET on a
# 3-node cluster (separate processes, fsync on) under `cairn workload kv` (random
# writes, 32 workers, 256-byte values).
#
#   before  BEFORE seconds on one range, splitting by size effectively off (64 MiB);
#   during  SET CLUSTER SETTING kv.range.max_bytes = $SPLIT_BYTES: the table splits
#           until it has $TARGET ranges;
#   after   the limit goes back to 64 MiB, so splitting stops; AFTER seconds more.
#           With MERGE=1 the merge queue is on, and the ranges, now tiny for the
#           limit, merge back during this phase (merges per minute are reported).
#
# Prints splits per minute, and throughput and p99 latency per phase (the mean of the
# per-second figures, and the worst second), as a markdown table (also in $OUT,
# default bench-splits.md); plots the run into $PLOT (default docs/split-timeseries.png).
#
#   bench/split_growth.sh
#   REBALANCE=0 bench/split_growth.sh    # leases stay where the splits put them
#   MERGE=1 AFTER=120 bench/split_growth.sh   # then merge back under the same load
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=${BEFORE:-30}
AFTER=${AFTER:-30}
TARGET=${TARGET:-64}
SPLIT_BYTES=${SPLIT_BYTES:-524288}
LIMIT=${LIMIT:-600}
OUT=${OUT:-bench-splits.md}
PLOT=${PLOT:-docs/split-timeseries.png}
source bench/lib.sh
start_cairn_cluster 27750
URL="postgresql://root@127.0.0.1:27771/defaultdb?sslmode=disable"
sql() { psql -X -q -At "$URL" -c "$1"; }

# Size splits only: load-based splitting (and the lease moves that follow it) would
# split the table during the "before" phase at this write rate.
sql "SET CLUSTER SETTING kv.range_split.load_qps_threshold = 0"
# REBALANCE=0 keeps every lease where the splits put it (on the first leaseholder).
sql "SET CLUSTER SETTING kv.allocator.rebalance_enabled = ${REBALANCE:-1}"
# MERGE=0 (the default) keeps the split ranges apart in the "after" phase.
MERGE=${MERGE:-0}
sql "SET CLUSTER SETTING kv.range_merge.queue_enabled = $MERGE"
"$CAIRN" workload init kv --url "$URL" >/dev/null
"$CAIRN" workload run kv --url "$URL" --concurrency 32 --duration "$LIMIT" --value-bytes 256 \
  --json --timeseries "$work/ts.csv" >"$work/summary.json" &
wl=$!
pids+=("$wl")
t0=$(date +%s.%N)
since() { python3 -c "import sys; print(f'{float(sys.argv[1]) - float(sys.argv[2]):.1f}')" "$(date +%s.%N)" "$t0"; }
lt() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$1" "$2"; }
ranges() { sql "SHOW RANGES FROM TABLE kv" | wc -l; }
: >"$work/ranges.csv"
sample() { echo "$(since),$(ranges)" | tee -a "$work/ranges.csv"; }

while lt "$(since)" "$BEFORE"; do sample >/dev/null; sleep 1; done
start_split=$(since)
sql "SET CLUSTER SETTING kv.range.max_bytes = $SPLIT_BYTES"
echo "t=${start_split}s: kv.range.max_bytes = $SPLIT_BYTES"
while :; do
  line=$(sample)
  n=${line#*,}
  [ "$n" -ge "$TARGET" ] && break
  if ! lt "$(since)" "$((LIMIT - AFTER - 5))"; then
    echo "only $n ranges after $(since)s" >&2
    exit 1
  fi
  sleep 1
done
end_split=$(since)
sql "SET CLUSTER SETTING kv.range.max_bytes = DEFAULT"
echo "t=${end_split}s: $n ranges; kv.range.max_bytes back to the default"
stop_at=$(python3 -c "print(float('$end_split') + $AFTER)")
while lt "$(since)" "$stop_at"; do sample >/dev/null; sleep 1; done
kill -INT "$wl"
wait "$wl" || true

python3 - "$work/ts.csv" "$work/ranges.csv" "$work/summary.json" "$start_split" "$end_split" "$OUT" "$MERGE" <<'PY'
import csv, json, sys
ts, ranges_csv, summary, start, end, out, merge = sys.argv[1:8]
merge = merge == "1"
start, end = float(start), float(end)
rows = [r for r in csv.DictReader(open(ts)) if r["op"] == "write"]
ranges = [tuple(map(float, l.split(","))) for l in open(ranges_csv) if l.strip()]
first = max((n for t, n in ranges if t < start), default=1)
last = max(n for t, n in ranges if t <= end + 1)
if merge:
    after = [(t, n) for t, n in ranges if t > end]
    fewest = min(n for t, n in after)
    reached = min(t for t, n in after if n == fewest)
phases = {
    "before (1 range)": (5, start),
    "during splits": (start, end),
}
if merge:
    phases["while merging"] = (end, reached)
    phases["after merging"] = (reached + 5, float("inf"))
else:
    phases["after"] = (end + 5, float("inf"))
s = json.load(open(summary))
lines = [
    f"splits: {int(last - first)} in {end - start:.0f} s = {(last - first) / (end - start) * 60:.0f} per minute "
    f"(from {int(first)} to {int(last)} ranges)",
]
if merge:
    lines.append(
        f"merges: {int(last - fewest)} in {reached - end:.0f} s = "
        f"{(last - fewest) / (reached - end) * 60:.0f} per minute (from {int(last)} to {int(fewest)} ranges)"
    )
lines += [
    f"errors: {s['errors'] or 'none'}",
    "",
    "| phase | seconds | writes/s | p99 ms (mean of seconds) | p99 ms (worst second) |",
    "|---|---|---|---|---|",
]
means = {}
for name, (a, b) in phases.items():
    sel = [r for r in rows if a <= float(r["seconds"]) < b]
    if not sel:
        continue
    tput = sum(float(r["ops_per_sec"]) for r in sel) / len(sel)
    p99 = sum(float(r["p99_ms"]) for r in sel) / len(sel)
    worst = max(float(r["p99_ms"]) for r in sel)
    means[name] = p99
    lines.append(f"| {name} | {len(sel)} | {tput:.0f} | {p99:.1f} | {worst:.1f} |")
steady = means.get("before (1 range)")
during = means.get("during splits")
if steady and during:
    lines.append("")
    lines.append(f"p99 during splits / before: {during / steady:.2f}x (goal: at most 2x)")
if steady and means.get("while merging"):
    lines.append(f"p99 while merging / before: {means['while merging'] / steady:.2f}x")
text = "\n".join(lines)
print(text)
open(out, "w").write(text + "\n")
PY

venv="$HOME/.cache/cairn/bench-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import matplotlib" 2>/dev/null; then
  python3 -m venv "$venv" && "$venv/bin/pip" install -q matplotlib
fi
"$venv/bin/python" bench/plot.py "$PLOT" \
  "cairn workload kv while one table splits to $TARGET ranges (splitting from t=${start_split%.*}s to ${end_split%.*}s)" \
  "writes=$work/ts.csv"
echo "plot: $PLOT"
