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
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a node.
    Start(StartArgs),
    /// Bootstrap a new cluster on a started node.
    Init(InitArgs),
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
    /// Run without TLS or authentication (the only mode so far).
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// RPC address of the node to bootstrap the cluster on.
    #[arg(long, default_value_t = format!("127.0.0.1:{DEFAULT_RPC_PORT}"))]
    pub host: String,
    #[arg(long)]
    pub insecure: bool,
}

/// Runs the command line; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Start(args) => start(args).await,
        Command::Init(args) => init(args).await,
    }
}

fn require_insecure(insecure: bool) -> Result<(), String> {
    if insecure {
        Ok(())
    } else {
        Err("secure mode (TLS, passwords) is not built yet: pass --insecure".into())
    }
}

async fn start(args: StartArgs) -> i32 {
    if let Err(e) = require_insecure(args.insecure) {
        eprintln!("error: {e}");
        return 2;
    }
    let mut config = NodeConfig::local(args.store);
    config.listen_addr = args.listen_addr;
    config.advertise_addr = args.advertise_addr;
    config.sql_addr = args.sql_addr;
    config.http_addr = args.http_addr;
    config.join = args.join;
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
    if tokio::signal::ctrl_c().await.is_err() {
        eprintln!("error: cannot wait for Ctrl-C");
    }
    node.shutdown().await;
    0
}

async fn init(args: InitArgs) -> i32 {
    if let Err(e) = require_insecure(args.insecure) {
        eprintln!("error: {e}");
        return 2;
    }
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
