#!/usr/bin/env bash
# Side by side, in one run on one machine:
#   - PostgreSQL 15 (one server, initdb in a temporary directory, fsync on) and a
#     3-node Cairn cluster (separate processes, 3 replicas, fsync on) under the same
#     pgbench and sysbench commands: pgbench -i -s 10, TPC-B (8 clients), -S (8
#     clients), sysbench oltp_point_select and oltp_read_write (8 threads);
#   - a 3-member etcd 3.4 against Cairn's kv workload on one range (write-only, 32
#     writers, 256-byte values), and Cairn's KV-level puts for reference.
# Prints each figure, then a table of Cairn/peer ratios (also in $OUT, default
# bench-compare.md), and plots the kv runs over time ($PLOT, default
# docs/kv-timeseries.png).
#
#   bench/compare.sh [duration-seconds]
#
# Installs what is missing (Debian: postgresql-15, etcd-server, sysbench) when root.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-30}
OUT=${OUT:-bench-compare.md}
PLOT=${PLOT:-docs/kv-timeseries.png}
SETTLE=${SETTLE:-60}
need=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15 postgresql-client-15)
command -v pgbench >/dev/null || need+=(postgresql-client-15)
command -v etcd >/dev/null || need+=(etcd-server etcd-client)
command -v sysbench >/dev/null || need+=(sysbench)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
source bench/lib.sh
PGBIN=/usr/lib/postgresql/15/bin
results="$work/results.tsv"
: >"$results"
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" | tee -a "$results"; }

# ---- PostgreSQL 15 ------------------------------------------------------------------
PGPORT=27900
pgdata="$work/pgdata"
mkdir -p "$pgdata"
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$work" "$pgdata"
  as_pg=(runuser -u postgres --)
fi
"${as_pg[@]}" "$PGBIN/initdb" -D "$pgdata" --auth=trust -U postgres >/dev/null
"${as_pg[@]}" "$PGBIN/pg_ctl" -D "$pgdata" -l "$work/pg.log" -w \
  -o "-p $PGPORT -k $work -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=100" start >/dev/null
stop_pg() { "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$pgdata" -m fast stop >/dev/null 2>&1 || true; }
trap 'stop_pg; cleanup' EXIT
PG_URL="postgresql://postgres@127.0.0.1:$PGPORT/postgres?sslmode=disable"

# ---- Cairn ----------------------------------------------------------------------------
start_cairn_cluster 27750
CAIRN_URL="postgresql://root@127.0.0.1:27771/defaultdb?sslmode=disable"
for _ in $(seq 1 100); do psql "$CAIRN_URL" -qX -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done

echo "# $(date -u +%FT%TZ), $(nproc) cores, ${DURATION}s per run, $CAIRN"
pgbench_tps() { awk '/^tps/ {print $3}'; }
for target in postgres cairn; do
  url=$PG_URL
  [ $target = cairn ] && url=$CAIRN_URL
  start=$(date +%s.%N)
  pgbench -i -s 10 -q "$url" >"$work/$target-init.log" 2>&1 || {
    echo "pgbench -i failed on $target:" >&2
    tail -20 "$work/$target-init.log" >&2
    exit 1
  }
  record "$target" "pgbench -i -s 10 (s)" "$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')"
  # Let the load's background work settle before measuring (in Cairn, resolving
  # the intents of the load's two big transactions takes 30-40 s).
  sleep "$SETTLE"
  out=$(pgbench -c 8 -j 2 -T "$DURATION" "$url" 2>&1)
  record "$target" "pgbench TPC-B 8 clients (tps)" "$(echo "$out" | pgbench_tps)"
  echo "$out" | grep -E "failed|latency average" | sed "s/^/  $target: /"
  out=$(pgbench -S -c 8 -j 2 -T "$DURATION" "$url" 2>&1)
  record "$target" "pgbench -S 8 clients (tps)" "$(echo "$out" | pgbench_tps)"
done

# ---- sysbench -------------------------------------------------------------------------
sb_args() {
  if [ "$1" = postgres ]; then
    echo "--db-driver=pgsql --pgsql-host=127.0.0.1 --pgsql-port=$PGPORT --pgsql-user=postgres --pgsql-db=postgres"
  else
    echo "--db-driver=pgsql --pgsql-host=127.0.0.1 --pgsql-port=27771 --pgsql-user=root --pgsql-db=defaultdb"
  fi
}
for target in postgres cairn; do
  args=$(sb_args $target)
  # shellcheck disable=SC2086
  sysbench oltp_read_write $args --tables=1 --table-size=10000 cleanup >/dev/null 2>&1 || true
  # shellcheck disable=SC2086
  sysbench oltp_read_write $args --tables=1 --table-size=10000 prepare >"$work/$target-sb-prepare.log" 2>&1
  for test in oltp_point_select oltp_read_write; do
    # shellcheck disable=SC2086
    out=$(sysbench $test $args --tables=1 --table-size=10000 --threads=8 --time="$DURATION" run 2>&1)
    tps=$(echo "$out" | awk -F'[( ]+' '/transactions:/ {print $4}')
    record "$target" "sysbench $test 8 threads (tps)" "$tps"
    echo "$out" | grep -E "ignored errors|95th" | sed "s/^/  $target: /"
  done
done
stop_pg

# ---- etcd against Cairn's kv workload on one range ------------------------------------
start_etcd_cluster
etcd_json=$("$CAIRN" bench kv-put --etcd "$leader" --concurrency 32 --duration "$DURATION" --value-bytes 256 --json)
record etcd "puts, 32 writers (ops/s)" "$(echo "$etcd_json" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["ops_per_sec"]))')"
"$CAIRN" workload init kv --url "$CAIRN_URL" >/dev/null
kv_json=$("$CAIRN" workload run kv --url "$CAIRN_URL" --concurrency 32 --duration "$DURATION" --value-bytes 256 --json --timeseries "$work/kv-write.csv")
record cairn "puts, 32 writers (ops/s)" "$(echo "$kv_json" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["ops"][0]["ops_per_sec"]))')"
kvput_json=$("$CAIRN" bench kv-put --host 127.0.0.1:27751 --concurrency 32 --duration "$DURATION" --value-bytes 256 --json)
record cairn-kv "puts, 32 writers (ops/s)" "$(echo "$kvput_json" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["ops_per_sec"]))')"

# kv with reads too, over 8 ranges, for the plot.
"$CAIRN" workload init kv --url "$CAIRN_URL" --splits 8 >/dev/null
"$CAIRN" workload run kv --url "$CAIRN_URL" --concurrency 32 --duration "$DURATION" --value-bytes 256 \
  --read-percent 50 --json --timeseries "$work/kv-mixed.csv" >/dev/null
venv="$HOME/.cache/cairn/bench-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import matplotlib" 2>/dev/null; then
  python3 -m venv "$venv" && "$venv/bin/pip" install -q matplotlib
fi
"$venv/bin/python" bench/plot.py "$PLOT" "cairn workload kv: 32 workers, 256-byte values, 3 nodes" \
  "1 range, writes=$work/kv-write.csv" "8 ranges, 50% reads=$work/kv-mixed.csv"
echo "plot: $PLOT"

python3 - "$results" "$OUT" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
val = {(t, m): v for t, m, v in rows}
lines = ["| measure | Cairn | peer | Cairn/peer |", "|---|---|---|---|"]
for (t, m), v in val.items():
    if t != "cairn":
        continue
    peer_t = "etcd" if m.startswith("puts") else "postgres"
    p = val.get((peer_t, m))
    try:
        c, q = float(v), float(p)
        # For the load time, lower is better: the ratio is peer/Cairn.
        ratio = q / c if "(s)" in m else c / q
        ratio = f"{ratio:.2f}x"
    except (TypeError, ValueError, ZeroDivisionError):
        ratio = "n/a"
    lines.append(f"| {m} | {v} | {peer_t} {p} | {ratio} |")
if ("cairn-kv", "puts, 32 writers (ops/s)") in val:
    c, q = val[("cairn-kv", "puts, 32 writers (ops/s)")], val.get(("etcd", "puts, 32 writers (ops/s)"))
    lines.append(f"| KV-level puts, 32 writers (ops/s) | {c} | etcd {q} | {float(c)/float(q):.2f}x |")
text = "\n".join(lines)
print()
print(text)
open(sys.argv[2], "w").write(text + "\n")
PY
