//! Consistency checks: do a range's replicas hold the same data?
//!
//! The leaseholder proposes a command that carries only a check id
//! ([`RaftCommand::checksum`]). Every replica, applying it, writes what it has applied so
//! far, takes a view of its store there, and hashes the range's replicated data (the
//! spans a Raft snapshot carries) from that view in the background. Every replica so
//! hashes the same prefix of the log, whenever it gets to it. The checker then asks
//! each replica for the result ([`crate::raft::RaftRequest::Checksum`], answered by the
//! store) and compares. A replica that has not applied the command yet answers "not
//! yet".

use std::collections::VecDeque;
use std::time::Duration;

use cairn_kv::api::{self, RangeDescriptor};
use cairn_kv::storage::{Snapshot, Space};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::raft::RaftCommand;
use crate::raft::state_machine::data_spans;
use crate::replica::Replica;

/// How many finished checks a replica remembers.
const KEPT: usize = 16;

/// One replica's hash of its range's data at one log index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaChecksum {
    /// The log index of the check command.
    pub index: u64,
    /// Stored entries hashed.
    pub entries: u64,
    /// SHA-256 over every entry's key and value, in key order, each length-prefixed.
    pub digest: [u8; 32],
    /// Why the replica could not hash its data (a storage error), if it could not.
    pub error: Option<String>,
}

/// The checks a replica has finished, newest last.
#[derive(Debug, Default)]
pub struct Checksums(Mutex<VecDeque<(u64, ReplicaChecksum)>>);

impl Checksums {
    /// The result of check `id`, once this replica has computed it.
    pub fn get(&self, id: u64) -> Option<ReplicaChecksum> {
        self.0
            .lock()
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, c)| c.clone())
    }

    pub(crate) fn record(&self, id: u64, sum: ReplicaChecksum) {
        let mut done = self.0.lock();
        done.push_back((id, sum));
        while done.len() > KEPT {
            done.pop_front();
        }
    }
}

/// Hashes `desc`'s replicated data as `view` holds it.
pub fn compute(view: &dyn Snapshot, desc: &RangeDescriptor, index: u64) -> ReplicaChecksum {
    let mut hasher = Sha256::new();
    let mut entries = 0u64;
    let mut hash_span = |start: &[u8], end: &[u8]| -> cairn_kv::Result<()> {
        let mut it = view.iter(Space::Data, start, Some(end))?;
        it.seek_to_first()?;
        while let Some((k, v)) = it.current() {
            for part in [k, v] {
                hasher.update((part.len() as u64).to_be_bytes());
                hasher.update(part);
            }
            entries += 1;
            it.next()?;
        }
        Ok(())
    };
    let mut error = None;
    for span in data_spans(desc) {
        if let Err(e) = hash_span(&span.start, &span.end) {
            error = Some(e.to_string());
            break;
        }
    }
    ReplicaChecksum {
        index,
        entries,
        digest: hasher.finalize().into(),
        error,
    }
}

impl Replica {
    /// On the leaseholder: replicates a checksum command under a fresh check id, and
    /// returns the id and the command's log index once it has applied here.
    pub(crate) async fn compute_checksum(&self) -> Result<(RangeDescriptor, u64, u64), api::Error> {
        let desc = self.current_descriptor()?;
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        self.hold_lease(&desc, deadline).await?;
        let id = fastrand::u64(1..);
        let cmd = RaftCommand {
            checksum: Some(id),
            ..RaftCommand::default()
        };
        match tokio::time::timeout_at(deadline, self.group().propose(cmd)).await {
            Err(_) => Err(api::Error::AmbiguousResult {
                range_id: self.range_id,
                reason: "checksum command not applied in time".into(),
            }),
            Ok(Err(e)) => Err(self.group_error(e, &desc, true)),
            Ok(Ok(res)) => Ok((desc, id, res.applied_index)),
        }
    }
}

/// How long a checker waits for every replica to finish one check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
