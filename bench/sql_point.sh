#!/usr/bin/env bash
# Single-row SQL statements through pgbench on a 3-node cluster (separate processes,
# fsync on): an UPDATE by primary key and a SELECT by primary key, each an implicit
# transaction, at 1 and 8 clients. Prints pgbench's TPS and mean latency per run.
#
#   bench/sql_point.sh [duration-seconds]
#   CAIRN_BIN=path/to/cairn bench/sql_point.sh   (another build, for before/after)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-15}
source bench/lib.sh
CAIRN="${CAIRN_BIN:-$CAIRN}"
start_cairn_cluster 27750
URL="postgresql://root@127.0.0.1:27771/defaultdb?sslmode=disable"
for _ in $(seq 1 100); do psql "$URL" -qX -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done
psql "$URL" -qX -c "CREATE TABLE kv (k INT PRIMARY KEY, v INT NOT NULL)"
seq 1 1000 | awk '{print $1 "\t0"}' | psql "$URL" -qX -c "COPY kv FROM STDIN"
printf '\\set k random(1, 1000)\nUPDATE kv SET v = v + 1 WHERE k = :k;\n' >"$work/update.sql"
printf '\\set k random(1, 1000)\nSELECT v FROM kv WHERE k = :k;\n' >"$work/select.sql"
echo "# $(date -u +%FT%TZ), $(nproc) cores, ${DURATION}s per run, $CAIRN"
for script in update select; do
  for c in 1 8; do
    out=$(pgbench -n -f "$work/$script.sql" -c "$c" -j "$c" -T "$DURATION" "$URL" 2>&1)
    tps=$(echo "$out" | awk '/^tps/ {print $3}')
    lat=$(echo "$out" | awk '/latency average/ {print $4}')
    echo "$script clients=$c tps=$tps latency_ms=$lat"
  done
done
