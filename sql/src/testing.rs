//! A single node on the in-memory engine, for the SQL layer's tests: a real store,
//! Raft group, DistSender and transaction coordinator, without sockets or RocksDB.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cairn_kv::NodeId;
use cairn_kv::api::{BoxFuture, Sender};
use cairn_kv::hlc::Clock;
use cairn_range::raft::{RaftConfig, RaftEnvelope, RaftReply, RaftTransport};
use cairn_range::{Store, StoreConfig};
use cairn_txn::{Db, DistSender, NodeDialer};
use sqllogictest::{DBOutput, DefaultColumnType};

use crate::error::Error;
use crate::session::{ExecResult, Session, SqlServer};

/// A single node has no one to talk to.
struct NoPeers;

impl RaftTransport for NoPeers {
    fn send(&self, msg: RaftEnvelope, _: Duration) -> BoxFuture<'_, Result<RaftReply, String>> {
        Box::pin(async move { Err(format!("{} unreachable: single-node test", msg.to_node)) })
    }
}

struct OneNode(Arc<Store>);

impl NodeDialer for OneNode {
    fn sender(&self, _: NodeId) -> Arc<dyn Sender> {
        self.0.clone()
    }
    fn nodes(&self) -> Vec<NodeId> {
        vec![self.0.node_id()]
    }
}

/// A bootstrapped single-node cluster with its SQL server.
pub async fn single_node() -> Arc<SqlServer> {
    single_node_with_store().await.0
}

/// [`single_node`], and its store (to look at its ranges' Raft logs).
pub async fn single_node_with_store() -> (Arc<SqlServer>, Arc<Store>) {
    let clock = Arc::new(Clock::system());
    let config = StoreConfig {
        node_id: NodeId(1),
        addr: "local:1".into(),
        raft: RaftConfig {
            heartbeat: Duration::from_millis(50),
            election_min: Duration::from_millis(150),
            election_max: Duration::from_millis(300),
            ..RaftConfig::default()
        },
        request_timeout: Duration::from_secs(5),
    };
    let engine = Arc::new(cairn_kv::storage::memory::Memory::new());
    let store = Store::open(config, engine, Arc::new(NoPeers), clock.clone())
        .await
        .expect("store opens");
    store.bootstrap().await.expect("bootstrap");
    let dist = Arc::new(DistSender::new(
        Arc::new(OneNode(store.clone())),
        Duration::from_secs(5),
    ));
    store.set_cluster_sender(dist.clone());
    // The store lives as long as the process; tests are short.
    std::mem::forget(store.clone());
    let server = SqlServer::new(Db::new(dist, clock), 1);
    server.bootstrap(None).await.expect("catalog bootstrap");
    (server, store)
}

/// A session as a sqllogictest database, printing values as Postgres' simple query
/// protocol does (NULL as "NULL", the empty string as "(empty)").
pub struct LocalDb(pub Session);

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for LocalDb {
    type Error = Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Error> {
        let mut results = self.0.simple_query(sql).await;
        let last = results.pop().unwrap_or(Ok(ExecResult::Empty));
        // Earlier statements succeeded (a failure ends the list).
        match last? {
            ExecResult::Rows { rows, columns, .. } if !rows.is_empty() => Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Any; columns.len()],
                rows: rows
                    .into_iter()
                    .map(|r| {
                        r.into_iter()
                            .map(|v| match v.to_text() {
                                None => "NULL".to_string(),
                                Some(s) if s.is_empty() => "(empty)".to_string(),
                                Some(s) => s,
                            })
                            .collect()
                    })
                    .collect(),
            }),
            _ => Ok(DBOutput::StatementComplete(0)),
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "postgres"
    }

    fn error_sql_state(err: &Error) -> Option<String> {
        Some(err.code.code().to_string())
    }
}

/// The shared conformance files, committed under `tests/slt`.
pub fn slt_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/slt")
}
