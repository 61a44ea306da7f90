# Shared by the benchmark scripts (source it): builds cairn, keeps a work directory and
# the processes started, and starts a 3-node cluster of separate processes.
#
#   CAIRN      the release binary
#   work       a temporary directory, removed at exit with every process in `pids`
#   start_cairn_cluster BASE   nodes on 127.0.0.1:BASE+1..3 (rpc), BASE+11.. (http),
#                              BASE+21.. (sql); waits until the first range has 3 replicas
#   start_etcd_cluster         a 3-member etcd (clients 127.0.0.1:23791-3); sets `leader`
#                              to the leader's host:port
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn/target}"
cargo build --release -q -p cairn-server
CAIRN="$CARGO_TARGET_DIR/release/cairn"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start_cairn_cluster() {
  local base=$1
  for i in 1 2 3; do
    "$CAIRN" start --insecure --store "$work/cairn$i" \
      --listen-addr "127.0.0.1:$((base + i))" --http-addr "127.0.0.1:$((base + 10 + i))" \
      --sql-addr "127.0.0.1:$((base + 20 + i))" \
      --join "127.0.0.1:$((base + 1))" >"$work/cairn$i.log" 2>&1 &
    pids+=($!)
  done
  sleep 1
  "$CAIRN" init --insecure --host "127.0.0.1:$((base + 1))" >/dev/null
  for _ in $(seq 1 120); do
    if curl -s "127.0.0.1:$((base + 11))/_status/ranges" | grep -q '"replicas":\[1,2,3\]'; then
      return 0
    fi
    sleep 0.5
  done
  echo "cairn did not reach 3 replicas" >&2
  return 1
}

start_etcd_cluster() {
  cluster="e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802,e3=http://127.0.0.1:23803"
  for i in 1 2 3; do
    etcd --name "e$i" --data-dir "$work/etcd$i" \
      --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
      --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
      --initial-cluster "$cluster" --initial-cluster-state new --log-level error >"$work/etcd$i.log" 2>&1 &
    pids+=($!)
  done
  endpoints=http://127.0.0.1:23791,http://127.0.0.1:23792,http://127.0.0.1:23793
  leader=""
  for _ in $(seq 1 60); do
    leader=$(ETCDCTL_API=3 etcdctl --endpoints "$endpoints" endpoint status -w json 2>/dev/null \
      | python3 -c 'import json,sys; s=json.load(sys.stdin); print(next((e["Endpoint"] for e in s if e["Status"]["header"]["member_id"]==e["Status"]["leader"]),""))' 2>/dev/null || true)
    [ -n "$leader" ] && break
    sleep 0.5
  done
  [ -n "$leader" ] || { echo "etcd elected no leader"; exit 1; }
  leader=${leader#http://}
}
