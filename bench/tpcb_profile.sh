#!/usr/bin/env bash
# Where a pgbench TPC-B transaction's cost goes on a 3-node cluster (separate processes,
# fsync on): pgbench's per-statement latencies (-r), and, per transaction, the Raft
# commands proposed, the Raft log fsyncs of each node, and the CPU time of the three
# processes (from /proc). With PERF=file, also a DWARF call-graph profile of node 1
# for 6 s of the run (read it with `perf report -i file --children --sort sym`).
#
#   bench/tpcb_profile.sh [duration-seconds]       (default 20)
#   ARGS=-S bench/tpcb_profile.sh                  (point selects instead)
#   CAIRN_BIN=path/to/cairn bench/tpcb_profile.sh  (another build, for before/after)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-20}
source bench/lib.sh
CAIRN="${CAIRN_BIN:-$CAIRN}"
start_cairn_cluster 27750
URL="postgresql://root@127.0.0.1:27771/defaultdb?sslmode=disable"
for _ in $(seq 1 100); do psql "$URL" -qX -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done
pgbench -i -s "${SCALE:-10}" -q "$URL" >"$work/init.log" 2>&1 || {
  echo "pgbench -i failed:" >&2
  tail -20 "$work/init.log" >&2
  exit 1
}
# The load's intents are resolved in the background for a while after it commits.
sleep "${SETTLE:-45}"

scrape() { for i in 1 2 3; do curl -s "127.0.0.1:$((27760 + i))/metrics" >"$work/m$i.$1"; done; }
cpu_ticks() {
  local t=0
  for p in "${pids[@]:0:3}"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"
}
echo "# $(date -u +%FT%TZ), $(nproc) cores, ${DURATION}s, $CAIRN"
scrape before
c0=$(cpu_ticks)
profiler=""
if [ -n "${PERF:-}" ]; then
  (sleep 5; perf record -F 299 --call-graph dwarf,32768 -p "${pids[0]}" -o "$PERF" -- sleep 6 >/dev/null 2>&1) &
  profiler=$!
fi
# shellcheck disable=SC2086
out=$(pgbench -n ${ARGS:-} -c 8 -j 2 -T "$DURATION" -r "$URL" 2>&1)
c1=$(cpu_ticks)
scrape after
[ -z "$profiler" ] || wait "$profiler"
echo "$out" | grep -E "^tps|failed|latency average|^ +[0-9.]+ +[0-9]+ +[A-Z]"
python3 - "$work" "$((c1 - c0))" "$(getconf CLK_TCK)" "$(echo "$out" | awk '/actually processed/ {print $NF}')" <<'PY'
import re, sys
work, ticks, hz, txns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def load(path):
    d = {}
    for line in open(path):
        m = re.match(r'(\w+?)(_count|_total) (\S+)$', line.strip())
        if m:
            d[m.group(1)] = float(m.group(3))
    return d
raft, fsyncs = 0.0, []
for i in (1, 2, 3):
    a, b = load(f"{work}/m{i}.after"), load(f"{work}/m{i}.before")
    delta = lambda k: a.get(k, 0) - b.get(k, 0)
    raft += delta("cairn_raft_commit_latency_seconds")
    fsyncs.append(delta("cairn_wal_fsync_latency_seconds"))
print(f"per transaction ({txns}): raft commands {raft / txns:.2f}, "
      f"fsyncs per node {' '.join(f'{f / txns:.2f}' for f in fsyncs)}, "
      f"cpu {1000 * ticks / hz / txns:.2f} ms (3 processes)")
PY
