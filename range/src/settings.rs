//! Cluster settings: named integers stored in the system key space
//! (`/System/Setting/<name>`, an MVCC value holding the decimal number), set with SQL's
//! `SET CLUSTER SETTING name = value` and read by every node once a second.
//!
//! A setting that was never set (or was reset) takes the node's default: the value of
//! the matching `cairn start` flag if one was given, else the built-in default.

use std::collections::BTreeMap;

use cairn_kv::keys;

use crate::split_queue::{DEFAULT_LOAD_QPS_THRESHOLD, DEFAULT_RANGE_MAX_BYTES, SplitConfig};

/// One cluster setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    pub name: &'static str,
    /// The built-in default.
    pub default: u64,
    /// The least value accepted.
    pub min: u64,
    pub description: &'static str,
}

/// The range size above which a range splits, in bytes.
pub const RANGE_MAX_BYTES: &str = "kv.range.max_bytes";
/// The requests per second above which a range looks for a split key by load.
pub const LOAD_QPS_THRESHOLD: &str = "kv.range_split.load_qps_threshold";

/// Seconds a node may be not live before its replicas are replaced elsewhere.
pub const TIME_UNTIL_STORE_DEAD: &str = "server.time_until_store_dead";
/// The default of [`TIME_UNTIL_STORE_DEAD`]: 5 minutes.
pub const DEFAULT_TIME_UNTIL_STORE_DEAD_SECS: u64 = 300;

/// Whether the allocator evens out replicas and leases across nodes (1) or only
/// repairs ranges (0).
pub const REBALANCE_ENABLED: &str = "kv.allocator.rebalance_enabled";

/// Whether small, cold neighbouring ranges merge (1) or not (0).
pub const MERGE_QUEUE_ENABLED: &str = "kv.range_merge.queue_enabled";

/// Every cluster setting, by name.
pub const ALL: &[Setting] = &[
    Setting {
        name: RANGE_MAX_BYTES,
        default: DEFAULT_RANGE_MAX_BYTES,
        min: 1024,
        description: "bytes of data above which a range splits in two",
    },
    Setting {
        name: LOAD_QPS_THRESHOLD,
        default: DEFAULT_LOAD_QPS_THRESHOLD,
        min: 0,
        description: "requests per second above which a range splits by load (0: never)",
    },
    Setting {
        name: REBALANCE_ENABLED,
        default: 1,
        min: 0,
        description: "1: move replicas and leases to even them out across nodes; 0: only replace lost replicas",
    },
    Setting {
        name: MERGE_QUEUE_ENABLED,
        default: 1,
        min: 0,
        description: "1: merge a small, cold range with its right-hand neighbour; 0: never merge",
    },
    Setting {
        name: TIME_UNTIL_STORE_DEAD,
        default: DEFAULT_TIME_UNTIL_STORE_DEAD_SECS,
        min: 1,
        description: "seconds a node may be not live before its replicas are replaced on other nodes",
    },
];

/// The setting named `name`.
pub fn lookup(name: &str) -> Option<&'static Setting> {
    ALL.iter().find(|s| s.name == name)
}

/// Parses a stored or typed value of `setting`.
pub fn parse(setting: &Setting, text: &str) -> Result<u64, String> {
    let v: u64 = text.trim().parse().map_err(|_| {
        format!(
            "invalid value for {}: {text:?} is not a non-negative integer",
            setting.name
        )
    })?;
    if v < setting.min {
        return Err(format!(
            "invalid value for {}: {v} is below the minimum {}",
            setting.name, setting.min
        ));
    }
    Ok(v)
}

/// The values in force: the stored ones, then the node's defaults, then the built-in
/// ones. Stored values that do not parse are ignored (and named in the log).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    stored: BTreeMap<String, u64>,
    node_defaults: BTreeMap<String, u64>,
}

impl Settings {
    /// Settings with the node's defaults (its `cairn start` flags).
    pub fn with_node_defaults(defaults: impl IntoIterator<Item = (&'static str, u64)>) -> Self {
        Settings {
            stored: BTreeMap::new(),
            node_defaults: defaults
                .into_iter()
                .map(|(n, v)| (n.to_string(), v))
                .collect(),
        }
    }

    /// Replaces the stored values with a scan of [`keys::setting_span`]: raw keys and
    /// values, as the node and SHOW CLUSTER SETTING read them.
    pub fn set_stored_kvs(&mut self, kvs: Vec<(Vec<u8>, Vec<u8>)>) {
        self.set_stored(
            kvs.into_iter()
                .filter_map(|(k, v)| match keys::decode_setting_key(&k) {
                    Ok(name) => Some((name, v)),
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping a malformed setting key");
                        None
                    }
                }),
        );
    }

    /// Replaces the stored values with what the system key space holds.
    pub fn set_stored(&mut self, stored: impl IntoIterator<Item = (String, Vec<u8>)>) {
        self.stored.clear();
        for (name, value) in stored {
            let Some(setting) = lookup(&name) else {
                tracing::warn!(%name, "ignoring an unknown cluster setting");
                continue;
            };
            match std::str::from_utf8(&value)
                .map_err(|e| e.to_string())
                .and_then(|t| parse(setting, t))
            {
                Ok(v) => {
                    self.stored.insert(name, v);
                }
                Err(e) => tracing::warn!(%name, error = %e, "ignoring a stored cluster setting"),
            }
        }
    }

    /// The value of `name` in force (0 for an unknown name).
    pub fn get(&self, name: &str) -> u64 {
        self.stored
            .get(name)
            .or_else(|| self.node_defaults.get(name))
            .copied()
            .or_else(|| lookup(name).map(|s| s.default))
            .unwrap_or(0)
    }

    /// The value `name` takes when it is not set in the cluster.
    pub fn default_of(&self, name: &str) -> u64 {
        self.node_defaults
            .get(name)
            .copied()
            .or_else(|| lookup(name).map(|s| s.default))
            .unwrap_or(0)
    }

    /// How long a node may be not live before the allocator replaces its replicas.
    pub fn time_until_store_dead(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.get(TIME_UNTIL_STORE_DEAD))
    }

    /// Whether the allocator rebalances (as opposed to only repairing).
    pub fn rebalance_enabled(&self) -> bool {
        self.get(REBALANCE_ENABLED) != 0
    }

    /// What the split queue runs with.
    pub fn split_config(&self) -> SplitConfig {
        SplitConfig {
            max_bytes: self.get(RANGE_MAX_BYTES),
            load_qps_threshold: self.get(LOAD_QPS_THRESHOLD),
            merge_enabled: self.get(MERGE_QUEUE_ENABLED) != 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_win_over_node_defaults_over_built_in_ones() {
        let mut s = Settings::with_node_defaults([(RANGE_MAX_BYTES, 4096)]);
        assert_eq!(s.split_config().max_bytes, 4096);
        assert_eq!(
            s.split_config().load_qps_threshold,
            DEFAULT_LOAD_QPS_THRESHOLD
        );
        s.set_stored([
            (RANGE_MAX_BYTES.to_string(), b"2048".to_vec()),
            (LOAD_QPS_THRESHOLD.to_string(), b"not a number".to_vec()),
            ("no.such.setting".to_string(), b"1".to_vec()),
        ]);
        assert_eq!(s.split_config().max_bytes, 2048);
        assert_eq!(s.default_of(RANGE_MAX_BYTES), 4096);
        assert_eq!(
            s.split_config().load_qps_threshold,
            DEFAULT_LOAD_QPS_THRESHOLD
        );
        s.set_stored([]);
        assert_eq!(s.split_config().max_bytes, 4096);
    }

    #[test]
    fn values_below_the_minimum_are_refused() {
        let max = lookup(RANGE_MAX_BYTES).unwrap();
        assert!(
            parse(max, "100")
                .unwrap_err()
                .contains("below the minimum 1024")
        );
        assert!(parse(max, "-5").is_err());
        assert_eq!(parse(max, " 65536 "), Ok(65536));
    }
}
