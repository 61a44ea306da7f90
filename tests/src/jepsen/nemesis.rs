//! The faults, and the schedule that applies them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{RunClock, Session};
use crate::Rng;
use crate::processes::ProcessCluster;

/// One kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nemesis {
    /// `kill -9` of one or two nodes, restarted when the fault ends.
    Kill,
    /// `SIGSTOP` of one or two nodes, `SIGCONT` when the fault ends.
    Pause,
    /// The nodes cut into two random halves (iptables).
    PartitionHalves,
    /// Each node sees only its two neighbours on a ring: every node is in a majority,
    /// and no two majorities are the same.
    PartitionRing,
    /// The leaseholder of a random table's range cut off from every other node.
    PartitionLeaseholder,
    /// Every node's clock shifted by up to 40% of the maximum offset either way (so no
    /// two differ by more than 80% of it).
    ClockSkew,
    /// Splits of the workloads' tables at random keys (`ALTER TABLE ... SPLIT AT`).
    Split,
}

impl Nemesis {
    pub const ALL: [Nemesis; 7] = [
        Nemesis::Kill,
        Nemesis::Pause,
        Nemesis::PartitionHalves,
        Nemesis::PartitionRing,
        Nemesis::PartitionLeaseholder,
        Nemesis::ClockSkew,
        Nemesis::Split,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Nemesis::Kill => "kill",
            Nemesis::Pause => "pause",
            Nemesis::PartitionHalves => "partition-halves",
            Nemesis::PartitionRing => "partition-ring",
            Nemesis::PartitionLeaseholder => "partition-leaseholder",
            Nemesis::ClockSkew => "clock-skew",
            Nemesis::Split => "split",
        }
    }

    pub fn parse(name: &str) -> Option<Nemesis> {
        Nemesis::ALL.into_iter().find(|n| n.name() == name)
    }
}

/// The largest skew the clock nemesis gives one node, in milliseconds: 40% of the
/// default maximum offset, so two nodes differ by at most 80% of it.
fn max_skew_ms() -> i64 {
    let max = cairn_kv::hlc::DEFAULT_MAX_OFFSET.as_millis();
    i64::try_from(max * 2 / 5).unwrap_or(200)
}

pub(super) struct Schedule {
    pub nemeses: Vec<Nemesis>,
    pub fault_for: Duration,
    pub recover_for: Duration,
    /// The workloads' tables with an integer first key column, for the split nemesis.
    pub tables: Vec<String>,
}

impl Schedule {
    /// Applies the nemeses in turn until `time_limit` has passed, then heals everything.
    /// Returns what it did, a line per action.
    pub async fn run(
        &self,
        cluster: Arc<tokio::sync::Mutex<ProcessCluster>>,
        urls: Arc<Vec<String>>,
        mut rng: Rng,
        clock: RunClock,
        time_limit: Duration,
    ) -> Vec<String> {
        let mut log = Vec::new();
        let mut say = |line: String| {
            let line = format!("{:>9.3}s {line}", clock.now() as f64 / 1e6);
            tracing::info!("nemesis: {line}");
            log.push(line);
        };
        let started = Instant::now();
        let mut turn = 0;
        // A moment of load before the first fault.
        tokio::time::sleep(self.recover_for.min(time_limit)).await;
        while started.elapsed() + self.fault_for <= time_limit && !self.nemeses.is_empty() {
            let nemesis = self.nemeses[turn % self.nemeses.len()];
            turn += 1;
            let what = {
                let mut c = cluster.lock().await;
                self.apply(nemesis, &mut c, &urls, &mut rng).await
            };
            say(format!("{} start: {what}", nemesis.name()));
            tokio::time::sleep(self.fault_for).await;
            heal(&mut *cluster.lock().await);
            say(format!("{} healed", nemesis.name()));
            let left = time_limit.saturating_sub(started.elapsed());
            tokio::time::sleep(self.recover_for.min(left)).await;
        }
        let left = time_limit.saturating_sub(started.elapsed());
        tokio::time::sleep(left).await;
        heal(&mut *cluster.lock().await);
        say("end: healed, every node up".into());
        log
    }

    async fn apply(
        &self,
        nemesis: Nemesis,
        c: &mut ProcessCluster,
        urls: &Arc<Vec<String>>,
        rng: &mut Rng,
    ) -> String {
        let n = c.len();
        let mut nodes: Vec<usize> = (0..n).collect();
        shuffle(&mut nodes, rng);
        // At most a minority, so the cluster as a whole stays available.
        let some = &nodes[..(1 + rng.below(2) as usize).min((n - 1) / 2).max(1)];
        match nemesis {
            Nemesis::Kill => {
                for &i in some {
                    c.kill(i);
                }
                format!("killed {}", names(some))
            }
            Nemesis::Pause => {
                for &i in some {
                    c.pause(i, true);
                }
                format!("paused {}", names(some))
            }
            Nemesis::PartitionHalves => {
                let (a, b) = nodes.split_at(n / 2);
                c.partition_between(a, b);
                format!("cut {} from {}", names(a), names(b))
            }
            Nemesis::PartitionRing => {
                let mut cut = Vec::new();
                for i in 0..n {
                    for j in i + 1..n {
                        let d = (j - i).min(n - (j - i));
                        if d > 1 {
                            c.partition(nodes[i], nodes[j]);
                            cut.push(format!("n{}-n{}", nodes[i] + 1, nodes[j] + 1));
                        }
                    }
                }
                format!("ring: cut {}", cut.join(" "))
            }
            Nemesis::PartitionLeaseholder => {
                let Some((l, range)) = c.some_leaseholder(|n| rng.below(n as u64) as usize).await
                else {
                    return "no leaseholder to isolate".into();
                };
                let others: Vec<usize> = (0..n).filter(|&i| i != l).collect();
                c.partition_between(&[l], &others);
                format!("isolated n{}, leaseholder of {range}", l + 1)
            }
            Nemesis::ClockSkew => {
                let max = max_skew_ms();
                let skews: Vec<String> = (0..n)
                    .map(|i| {
                        let skew = rng.below(2 * max as u64 + 1) as i64 - max;
                        c.set_clock_offset(i, skew);
                        format!("n{}{skew:+}ms", i + 1)
                    })
                    .collect();
                format!("clocks {}", skews.join(" "))
            }
            Nemesis::Split => {
                let mut done = Vec::new();
                for _ in 0..3 {
                    if self.tables.is_empty() {
                        break;
                    }
                    let t = &self.tables[rng.below(self.tables.len() as u64) as usize];
                    let at = rng.below(200);
                    let via = rng.below(n as u64) as usize;
                    let mut s = Session::pinned(urls.clone(), via);
                    let r = s
                        .simple(&format!("ALTER TABLE {t} SPLIT AT VALUES ({at})"))
                        .await;
                    done.push(match r {
                        Ok(_) => format!("{t}@{at}"),
                        Err(e) => format!("{t}@{at} failed ({e})"),
                    });
                }
                format!("split {}", done.join(" "))
            }
        }
    }
}

/// Undoes every fault: links restored, paused nodes resumed, killed nodes restarted,
/// clocks set right.
fn heal(c: &mut ProcessCluster) {
    c.heal();
    for i in 0..c.len() {
        if c.is_paused(i) {
            c.pause(i, false);
        }
        c.restart(i);
        c.set_clock_offset(i, 0);
    }
}

fn names(nodes: &[usize]) -> String {
    nodes
        .iter()
        .map(|i| format!("n{}", i + 1))
        .collect::<Vec<_>>()
        .join(",")
}

fn shuffle(v: &mut [usize], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}
