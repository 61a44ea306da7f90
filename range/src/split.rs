//! Splitting a range in two, on an administrator's request.
//!
//! ```text
//!   before   r5 [a, z)                          /Meta/z -> r5 [a, z)
//!   after    r5 [a, m)      r9 [m, z)           /Meta/m -> r5 [a, m)
//!                                               /Meta/z -> r9 [m, z)
//! ```
//!
//! The leaseholder of the range:
//!
//! 1. takes a new range id from the cluster's id generator;
//! 2. holds write latches over everything that moves right (`[m, z)` and its range-local
//!    keys), so no request is evaluating there while the range changes;
//! 3. proposes one Raft command carrying the left-hand descriptor and a split trigger
//!    with the right-hand one. Applying it, every replica shrinks its descriptor and
//!    writes the new range's initial Raft state next to the data it already holds (no
//!    copy; see `StateMachine::create_right`), and its store starts the new replica;
//! 4. writes both meta entries. When the range being split is the meta range (the
//!    first range), they are written by the command itself; otherwise they are a batch
//!    to the first range;
//! 5. returns once the new range has a leader (normally this node's replica, which
//!    campaigns as soon as it starts), or its deadline passes.
//!
//! Requests that reach the left-hand range for keys that moved get `RangeKeyMismatch`
//! with its new descriptor; the sender reads the meta range again and retries.
//!
//! Step 4 is not atomic with step 3 when the range is not the meta range: if the
//! leaseholder dies between them, the meta range still describes the range before the
//! split, and lookups of keys that moved land on the left-hand range and get
//! `RangeKeyMismatch` (which the sender retries). The entries are repaired by the
//! ranges' next leaseholders: every replica writes its own meta entry when it starts
//! leading (`UpdateMeta`, which never replaces a newer generation; see the split
//! queue), so the window lasts until both sides have new leases, about an election
//! timeout. HAZARD: until then, requests for the moved keys wait (up to their
//! timeout) rather than fail. The entries of a split may also be written one at a time
//! (a repair, or the new range's leaseholder writing its own first): a lookup that
//! finds an entry not covering its key has met that gap, and the sender looks again.

use cairn_kv::RangeId;
use cairn_kv::api::{self, BatchRequest, RangeDescriptor, Request, Response};
use cairn_kv::keys::{self, Span};

use crate::latch::LatchSpan;
use crate::raft::{RaftCommand, SplitTrigger};
use crate::replica::Replica;

/// How many times a split is evaluated again after membership changes overtook it.
const SPLIT_ATTEMPTS: usize = 5;

/// The id generator that hands out range ids.
const RANGE_ID_GENERATOR: &str = "range_id";

impl Replica {
    /// Splits this range at `split_key` (see the module doc). Returns the left-hand and
    /// the right-hand descriptors. A split that a membership change overtook on its way
    /// to the log is evaluated again (a few times). The merge queue leaves the split
    /// alone until `sticky_until` (see [`RangeDescriptor::sticky_until`]).
    pub async fn admin_split(
        &self,
        split_key: &[u8],
        sticky_until: u64,
    ) -> Result<(RangeDescriptor, RangeDescriptor), api::Error> {
        let mut why = String::new();
        for _ in 0..SPLIT_ATTEMPTS {
            match self.try_admin_split(split_key, sticky_until).await? {
                Ok(done) => return Ok(done),
                Err(rejected) => why = rejected,
            }
        }
        Err(api::Error::RangeUnavailable {
            range_id: self.range_id,
            reason: format!("split rejected {SPLIT_ATTEMPTS} times: {why}"),
        })
    }

    /// One attempt at a split: `Ok(Err(why))` if it was rejected when applied.
    async fn try_admin_split(
        &self,
        split_key: &[u8],
        sticky_until: u64,
    ) -> Result<Result<(RangeDescriptor, RangeDescriptor), String>, api::Error> {
        let range_id = self.range_id;
        let desc = self.current_descriptor()?;
        check_split_key(&desc, split_key)?;
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let timed_out = |what: &str| api::Error::RangeUnavailable {
            range_id,
            reason: format!("split timed out after {:?} {what}", self.request_timeout),
        };
        match tokio::time::timeout_at(deadline, self.group().lease_read()).await {
            Err(_) => return Err(timed_out("waiting for the lease")),
            Ok(Err(e)) => return Err(self.group_error(e, &desc, false)),
            Ok(Ok(())) => {}
        }
        let new_id = self.allocate_range_id().await?;

        let moving = vec![
            LatchSpan {
                span: Span::new(split_key.to_vec(), desc.end_key.clone()),
                write: true,
            },
            LatchSpan {
                span: keys::range_local_span(split_key, &desc.end_key),
                write: true,
            },
        ];
        let latches = tokio::time::timeout_at(deadline, self.latches.acquire(moving))
            .await
            .map_err(|_| timed_out("waiting for requests on the moving keys"))?;
        // The range may have changed while we waited.
        let desc = self.current_descriptor()?;
        check_split_key(&desc, split_key)?;
        if let Some((into, _)) = self.shared().frozen() {
            return Err(api::Error::RangeUnavailable {
                range_id,
                reason: format!("{desc} is frozen for a merge into {into}"),
            });
        }

        let generation = desc.generation + 1;
        let left = RangeDescriptor {
            end_key: split_key.to_vec(),
            generation,
            ..desc.clone()
        };
        let right = RangeDescriptor {
            range_id: new_id,
            start_key: split_key.to_vec(),
            generation,
            sticky_until,
            ..desc.clone()
        };
        // Should the meta write below not happen, the split queue writes the entry.
        self.meta_dirty
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let cmd = RaftCommand {
            batch: Default::default(),
            new_descriptor: Some(left.clone()),
            split: Some(SplitTrigger {
                right: right.clone(),
            }),
            ..RaftCommand::default()
        };
        match tokio::time::timeout_at(deadline, self.group().propose(cmd)).await {
            Err(_) => {
                return Err(api::Error::AmbiguousResult {
                    range_id,
                    reason: "split proposed but not applied in time".into(),
                });
            }
            Ok(Err(e)) => return Err(self.group_error(e, &desc, true)),
            Ok(Ok(res)) => {
                if let Some(why) = res.rejected {
                    return Ok(Err(why));
                }
            }
        }
        drop(latches);
        self.metrics
            .splits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(node = %self.node_id, %left, %right, "range split");

        if !left.contains_key(&keys::meta_key(&right.end_key)) {
            self.write_meta(&[&left, &right]).await?;
        }
        // Return once the new range has a leader, so that what follows the split does
        // not meet a range still electing its first one.
        let elected = async {
            loop {
                if self
                    .sibling(right.range_id)
                    .is_some_and(|r| r.status().leader.is_some())
                {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        };
        let _ = tokio::time::timeout_at(deadline, elected).await;
        Ok(Ok((left, right)))
    }

    /// A new range id, from the cluster-wide generator.
    async fn allocate_range_id(&self) -> Result<RangeId, api::Error> {
        let batch = BatchRequest::new(
            RangeId(0),
            vec![Request::Increment {
                key: keys::id_generator_key(RANGE_ID_GENERATOR),
                delta: 1,
            }],
        );
        let resp = self.cluster_sender()?.send(batch).await?;
        match resp.responses.as_slice() {
            // The generator counts the ranges made after the first.
            [Response::Increment { new_value }] if *new_value > 0 => {
                Ok(RangeId(1 + u64::try_from(*new_value).unwrap_or(0)))
            }
            other => Err(api::Error::InvalidRequest(format!(
                "range id generator answered {other:?}"
            ))),
        }
    }

    /// Writes the meta entries of `descs` (in the meta range, which is never split),
    /// where no newer entry is.
    pub(crate) async fn write_meta(&self, descs: &[&RangeDescriptor]) -> Result<(), api::Error> {
        let requests = descs
            .iter()
            .map(|d| Request::UpdateMeta { desc: (*d).clone() })
            .collect();
        self.cluster_sender()?
            .send(BatchRequest::new(RangeId(0), requests))
            .await
            .map(|_| ())
    }

    pub(crate) fn cluster_sender(&self) -> Result<std::sync::Arc<dyn api::Sender>, api::Error> {
        self.cluster
            .get()
            .cloned()
            .ok_or_else(|| api::Error::RangeUnavailable {
                range_id: self.range_id,
                reason: "this node cannot reach other ranges yet".into(),
            })
    }
}

/// A split key must cut the range in two non-empty pieces, outside the meta span
/// (which stays whole in the first range).
fn check_split_key(desc: &RangeDescriptor, split_key: &[u8]) -> Result<(), api::Error> {
    if split_key == desc.start_key.as_slice() {
        return Err(api::Error::InvalidRequest(format!(
            "cannot split at {}: {desc} already starts there",
            keys::pretty(split_key)
        )));
    }
    if split_key < desc.start_key.as_slice() || split_key >= desc.end_key.as_slice() {
        return Err(api::Error::RangeKeyMismatch {
            range_id: desc.range_id,
            span: Span::new(split_key.to_vec(), keys::next_key(split_key)),
            current: Some(Box::new(desc.clone())),
        });
    }
    if split_key < keys::META_MAX {
        return Err(api::Error::InvalidRequest(format!(
            "cannot split at {}: ranges split only at or above {}",
            keys::pretty(split_key),
            keys::pretty(keys::META_MAX)
        )));
    }
    Ok(())
}
