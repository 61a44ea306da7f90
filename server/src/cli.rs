//! The `cairn` command line.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cairn_kv::hlc::Clock;
use clap::{Args, Parser, Subcommand};

use crate::node::{DEFAULT_HTTP_PORT, DEFAULT_RPC_PORT, DEFAULT_SQL_PORT, Node, NodeConfig};
use crate::rpc::{RpcRequest, RpcResponse};
use crate::transport::Transport;

#[derive(Parser, Debug)]
#[command(name = "cairn", version, about = "Cairn: a distributed SQL database")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How log lines are written to stderr: `text`, or `json` (one object per line,
    /// with the span fields, for log collectors). `RUST_LOG` sets the levels.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a node.
    Start(StartArgs),
    /// Bootstrap a new cluster on a started node.
    Init(InitArgs),
    /// Run a local cluster in this process until Ctrl-C.
    Demo(DemoArgs),
    /// Measure a running cluster (and etcd, for comparison).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Tools for debugging and benchmarking a running cluster.
    #[command(subcommand)]
    Debug(DebugCommand),
    /// Load a cluster through SQL: bank transfers or key-value reads and writes.
    #[command(subcommand)]
    Workload(crate::workload::WorkloadCommand),
    /// Inspect and drain the nodes of a running cluster.
    #[command(subcommand)]
    Node(NodeCommand),
}

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Every node: address, liveness, replicas and leases held.
    Status(NodeHostArgs),
    /// Move every replica off a node, then report it drained. The node keeps running
    /// (stop it afterwards); it gets no new replicas while marked.
    Decommission(DecommissionArgs),
    /// Clear a node's decommissioning mark: it takes replicas again.
    Recommission(DecommissionArgs),
}

#[derive(Args, Debug)]
pub struct NodeHostArgs {
    /// RPC address of any node of the cluster.
    #[arg(long, default_value_t = format!("127.0.0.1:{DEFAULT_RPC_PORT}"))]
    pub host: String,
}

#[derive(Args, Debug)]
pub struct DecommissionArgs {
    /// The node's id (see `cairn node status`).
    pub node_id: u64,
    #[command(flatten)]
    pub host: NodeHostArgs,
    /// Return once the mark is written, without waiting for the replicas to move.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Closed-loop puts of fresh keys: throughput and latency.
    KvPut(KvPutArgs),
    /// Closed-loop two-key write transactions: one range (one-phase commit) against
    /// two ranges (two-phase commit).
    Txn(TxnArgs),
}

#[derive(Args, Debug)]
pub struct TxnArgs {
    /// RPC address of a Cairn node.
    #[arg(long, default_value_t = format!("127.0.0.1:{DEFAULT_RPC_PORT}"))]
    pub host: String,
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Seconds to run each kind.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 256)]
    pub value_bytes: usize,
    /// Print one JSON object per kind instead of a table row.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct KvPutArgs {
    /// RPC address of a Cairn node (omit to measure only etcd).
    #[arg(long)]
    pub host: Option<String>,
    /// host:port of an etcd member's client API, to measure etcd the same way.
    #[arg(long)]
    pub etcd: Option<String>,
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Seconds to run each target.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 256)]
    pub value_bytes: usize,
    /// Print one JSON object per target instead of a table row.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum DebugCommand {
    /// Create empty, idle ranges replicated on three nodes (to measure their cost).
    IdleRanges(IdleRangesArgs),
    /// Compare a hash of every range's replicas; exits 1 if any differ or cannot be
    /// compared.
    CheckConsistency(CheckConsistencyArgs),
}

#[derive(Args, Debug)]
pub struct CheckConsistencyArgs {
    /// RPC address of the node to run the check from.
    #[arg(long, default_value_t = format!("127.0.0.1:{DEFAULT_RPC_PORT}"))]
    pub host: String,
}

#[derive(Args, Debug)]
pub struct IdleRangesArgs {
    /// RPC address of the node to create them from.
    #[arg(long, default_value_t = format!("127.0.0.1:{DEFAULT_RPC_PORT}"))]
    pub host: String,
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Keep the stores in this directory (one subdirectory per node) instead of a
    /// temporary one removed at exit.
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// SQL port of the first node; node i gets this plus i-1.
    #[arg(long, default_value_t = DEFAULT_SQL_PORT)]
    pub sql_port: u16,
    /// HTTP port of the first node; node i gets this plus i-1.
    #[arg(long, default_value_t = DEFAULT_HTTP_PORT)]
    pub http_port: u16,
    /// RPC port of the first node; node i gets this plus i-1.
    #[arg(long, default_value_t = DEFAULT_RPC_PORT)]
    pub rpc_port: u16,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Directory of the node's store (created if missing).
    #[arg(long, default_value = "cairn-data")]
    pub store: PathBuf,
    /// Address to listen on for other nodes.
    #[arg(long, default_value_t = format!("127.0.0.1:{DEFAULT_RPC_PORT}"))]
    pub listen_addr: String,
    /// Address other nodes should dial (defaults to the listen address).
    #[arg(long)]
    pub advertise_addr: Option<String>,
    /// Address of the SQL (Postgres wire) port.
    #[arg(long, default_value_t = format!("127.0.0.1:{DEFAULT_SQL_PORT}"))]
    pub sql_addr: String,
    /// Address of the HTTP status port.
    #[arg(long, default_value_t = format!("127.0.0.1:{DEFAULT_HTTP_PORT}"))]
    pub http_addr: String,
    /// Nodes to join, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub join: Vec<String>,
    /// Trust every SQL client (no password). Without it, SQL clients authenticate
    /// with SCRAM-SHA-256 against the cluster's users. (TLS is not built yet: even
    /// then, traffic is not encrypted.)
    #[arg(long)]
    pub insecure: bool,
    /// A file holding the password root gets if it has none (secure mode).
    #[arg(long)]
    pub root_password_file: Option<PathBuf>,
    /// Bytes of data above which a range splits, unless the cluster setting
    /// kv.range.max_bytes says otherwise (default 64 MiB; at least 1024).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1024..))]
    pub range_max_bytes: Option<u64>,
    /// Fault tests: a file holding a clock offset in milliseconds (signed), read every
    /// 100 ms and added to this node's physical clock. A missing file is an offset of 0.
    #[arg(long, hide = true)]
    pub clock_offset_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// RPC address of the node to bootstrap the cluster on.
    #[arg(long, default_value_t = format!("127.0.0.1:{DEFAULT_RPC_PORT}"))]
    pub host: String,
    /// Accepted for symmetry with `start`; the RPC port has no TLS yet either way.
    #[arg(long)]
    pub insecure: bool,
}

/// Runs the command line; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Start(args) => start(args).await,
        Command::Init(args) => init(args).await,
        Command::Demo(args) => demo(args).await,
        Command::Bench(BenchCommand::KvPut(args)) => kv_put(args).await,
        Command::Bench(BenchCommand::Txn(args)) => txn_bench(args).await,
        Command::Debug(DebugCommand::IdleRanges(args)) => idle_ranges(args).await,
        Command::Debug(DebugCommand::CheckConsistency(args)) => check_consistency(args).await,
        Command::Workload(cmd) => crate::workload::run(cmd).await,
        Command::Node(cmd) => match node_command(cmd).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        },
    }
}

async fn start(args: StartArgs) -> i32 {
    let mut config = NodeConfig::local(args.store);
    config.insecure = args.insecure;
    if let Some(path) = &args.root_password_file {
        match std::fs::read_to_string(path) {
            Ok(p) => config.root_password = Some(p.trim_end_matches(['\n', '\r']).to_string()),
            Err(e) => {
                eprintln!("error: reading {}: {e}", path.display());
                return 2;
            }
        }
    }
    config.listen_addr = args.listen_addr;
    config.advertise_addr = args.advertise_addr;
    config.sql_addr = args.sql_addr;
    config.http_addr = args.http_addr;
    config.join = args.join;
    if let Some(n) = args.range_max_bytes {
        config
            .setting_defaults
            .push((cairn_range::settings::RANGE_MAX_BYTES, n));
    }
    let node = match Node::start(config).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    println!(
        "node listening: rpc {} http {}",
        node.rpc_addr(),
        node.http_addr()
    );
    if let Some(path) = args.clock_offset_file {
        tokio::spawn(follow_clock_offset(Arc::downgrade(&node), path));
    }
    if tokio::signal::ctrl_c().await.is_err() {
        eprintln!("error: cannot wait for Ctrl-C");
    }
    node.shutdown().await;
    0
}

/// Keeps `node`'s clock offset at what `path` says (see `StartArgs::clock_offset_file`).
async fn follow_clock_offset(node: std::sync::Weak<Node>, path: PathBuf) {
    let mut current = 0i64;
    while let Some(node) = node.upgrade() {
        let millis = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<i64>().unwrap_or(current),
            Err(_) => 0,
        };
        if millis != current {
            tracing::warn!(
                offset_ms = millis,
                "clock offset set by the fault-test file"
            );
            node.set_clock_offset(millis.saturating_mul(1_000_000));
            current = millis;
        }
        drop(node);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn node_command(cmd: NodeCommand) -> Result<(), String> {
    let transport = Transport::new(Arc::new(Clock::system()), "cairn-node".into());
    let call = |host: String, req: RpcRequest| {
        let transport = transport.clone();
        async move {
            match transport
                .call_addr(&host, req, Duration::from_secs(30))
                .await
            {
                Ok(RpcResponse::NodeStatuses(s)) => Ok(s),
                Ok(other) => Err(format!("unexpected answer: {other:?}")),
                Err(e) => Err(format!("{host}: {e}")),
            }
        }
    };
    match cmd {
        NodeCommand::Status(args) => {
            print_statuses(&call(args.host, RpcRequest::NodeStatuses).await?);
            Ok(())
        }
        NodeCommand::Recommission(args) => {
            let req = RpcRequest::Decommission {
                node_id: cairn_kv::NodeId(args.node_id),
                on: false,
            };
            print_statuses(&call(args.host.host, req).await?);
            Ok(())
        }
        NodeCommand::Decommission(args) => {
            let node = cairn_kv::NodeId(args.node_id);
            let req = RpcRequest::Decommission {
                node_id: node,
                on: true,
            };
            let host = args.host.host;
            let mut statuses = call(host.clone(), req).await?;
            print_statuses(&statuses);
            if args.no_wait {
                return Ok(());
            }
            // The counts are the node's own, published with each heartbeat.
            loop {
                let left = statuses
                    .iter()
                    .find(|s| s.record.node_id == node)
                    .map(|s| s.record.replicas)
                    .ok_or_else(|| format!("node {node} is gone from the liveness records"))?;
                if left == 0 {
                    println!("{node} is decommissioned: it holds no replicas; it can be stopped");
                    return Ok(());
                }
                println!("{node}: {left} replicas left");
                tokio::time::sleep(Duration::from_secs(2)).await;
                statuses = call(host.clone(), RpcRequest::NodeStatuses).await?;
            }
        }
    }
}

fn print_statuses(statuses: &[crate::node::NodeStatus]) {
    println!(
        "{:>4}  {:<22} {:<5} {:<15} {:>8} {:>6}",
        "id", "address", "live", "membership", "replicas", "leases"
    );
    for s in statuses {
        println!(
            "{:>4}  {:<22} {:<5} {:<15} {:>8} {:>6}",
            s.record.node_id.0,
            s.record.addr,
            s.live,
            if s.decommissioning {
                "decommissioning"
            } else {
                "active"
            },
            s.record.replicas,
            s.record.leases
        );
    }
}

async fn init(args: InitArgs) -> i32 {
    let transport = Transport::new(Arc::new(Clock::system()), "cairn-init".into());
    match transport
        .call_addr(&args.host, RpcRequest::Init, Duration::from_secs(60))
        .await
    {
        Ok(RpcResponse::Init { node_id }) => {
            println!("cluster initialized; {} holds the first range", node_id);
            0
        }
        Ok(other) => {
            eprintln!("error: unexpected answer: {other:?}");
            1
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

async fn demo(args: DemoArgs) -> i32 {
    match run_demo(args).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

async fn run_demo(args: DemoArgs) -> Result<(), String> {
    if args.nodes == 0 {
        return Err("--nodes must be at least 1".into());
    }
    let port = |base: u16, i: usize| -> Result<u16, String> {
        u16::try_from(usize::from(base) + i).map_err(|_| format!("port {base}+{i} is out of range"))
    };
    // A temporary directory lives until the demo ends.
    let temp = match &args.store {
        Some(_) => None,
        None => Some(tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?),
    };
    let root = match (&args.store, &temp) {
        (Some(dir), _) => dir.clone(),
        (None, Some(t)) => t.path().to_path_buf(),
        (None, None) => return Err("no store directory".into()),
    };
    let first_rpc = format!("127.0.0.1:{}", args.rpc_port);
    let mut nodes = Vec::new();
    for i in 0..args.nodes {
        let mut config = NodeConfig::local(root.join(format!("n{}", i + 1)));
        config.listen_addr = format!("127.0.0.1:{}", port(args.rpc_port, i)?);
        config.http_addr = format!("127.0.0.1:{}", port(args.http_port, i)?);
        config.sql_addr = format!("127.0.0.1:{}", port(args.sql_port, i)?);
        if i > 0 {
            config.join = vec![first_rpc.clone()];
        }
        nodes.push(Node::start(config).await.map_err(|e| e.to_string())?);
    }
    if !nodes[0].is_serving() {
        match nodes[0]
            .transport()
            .call_addr(&first_rpc, RpcRequest::Init, Duration::from_secs(60))
            .await
        {
            Ok(RpcResponse::Init { .. }) => {}
            Ok(other) => return Err(format!("unexpected answer to init: {other:?}")),
            Err(e) => return Err(format!("init: {e}")),
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !nodes.iter().all(|n| n.is_serving()) {
        if tokio::time::Instant::now() > deadline {
            return Err("nodes did not start serving within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "Cairn demo: {} node(s), stores in {}",
        nodes.len(),
        root.display()
    );
    for n in &nodes {
        // Node ids follow the order the nodes joined in, not the order they started.
        let id = n.node_id().map(|id| id.to_string()).unwrap_or_default();
        println!(
            "  {id}: rpc {}  console http://{}/  sql postgresql://root@{}/defaultdb?sslmode=disable",
            n.rpc_addr(),
            n.http_addr(),
            n.sql_addr()
        );
    }
    println!("Ctrl-C to stop.");
    if tokio::signal::ctrl_c().await.is_err() {
        return Err("cannot wait for Ctrl-C".into());
    }
    println!("stopping...");
    for n in &nodes {
        n.shutdown().await;
    }
    drop(nodes);
    drop(temp);
    Ok(())
}

async fn kv_put(args: KvPutArgs) -> i32 {
    let duration = Duration::from_secs_f64(args.duration.max(0.1));
    let mut reports = Vec::new();
    if let Some(host) = &args.host {
        match crate::bench::cairn_puts(host, args.concurrency, duration, args.value_bytes).await {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("error: cairn: {e}");
                return 1;
            }
        }
    }
    if let Some(etcd) = &args.etcd {
        match crate::bench::etcd_puts(etcd, args.concurrency, duration, args.value_bytes).await {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("error: etcd: {e}");
                return 1;
            }
        }
    }
    print_reports(&reports, args.json);
    0
}

fn print_reports(reports: &[crate::bench::Report], json: bool) {
    for r in reports {
        if json {
            match serde_json::to_string(r) {
                Ok(j) => println!("{j}"),
                Err(e) => eprintln!("error: {e}"),
            }
        } else {
            println!(
                "{:<18} concurrency {:>3}  {:>9.1} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms  errors {}",
                r.target, r.concurrency, r.ops_per_sec, r.p50_ms, r.p99_ms, r.max_ms, r.errors
            );
        }
    }
}

async fn txn_bench(args: TxnArgs) -> i32 {
    let duration = Duration::from_secs_f64(args.duration.max(0.1));
    let mut reports = Vec::new();
    for ranges in [1, 2] {
        match crate::bench::cairn_txns(
            &args.host,
            ranges,
            args.concurrency,
            duration,
            args.value_bytes,
        )
        .await
        {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        }
    }
    print_reports(&reports, args.json);
    0
}

async fn idle_ranges(args: IdleRangesArgs) -> i32 {
    let transport = Transport::new(Arc::new(Clock::system()), "cairn-debug".into());
    let req = RpcRequest::DebugIdleRanges { count: args.count };
    match transport
        .call_addr(&args.host, req, Duration::from_secs(600))
        .await
    {
        Ok(RpcResponse::DebugIdleRanges { created }) => {
            println!("created {created} idle ranges");
            0
        }
        Ok(other) => {
            eprintln!("error: unexpected answer: {other:?}");
            1
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

async fn check_consistency(args: CheckConsistencyArgs) -> i32 {
    let transport = Transport::new(Arc::new(Clock::system()), "cairn-debug".into());
    match transport
        .call_addr(
            &args.host,
            RpcRequest::CheckConsistency,
            Duration::from_secs(3600),
        )
        .await
    {
        Ok(RpcResponse::CheckConsistency(checks)) => {
            let bad = checks.iter().filter(|c| !c.consistent()).count();
            for c in &checks {
                println!("{c}");
            }
            println!("{} ranges checked, {bad} not consistent", checks.len());
            i32::from(bad > 0)
        }
        Ok(other) => {
            eprintln!("error: unexpected answer: {other:?}");
            1
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// The whole `cairn` program: parses the command line, sets up logging and the runtime,
/// runs the command, and returns the exit code.
pub fn main() -> i32 {
    use clap::Parser as _;
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(run(cli))
}
