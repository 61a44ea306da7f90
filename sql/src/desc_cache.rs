//! A node's cache of database ids and table descriptors, valid for one catalog version.
//!
//! Every statement names its database and tables; reading their namespace entries and
//! descriptors costs four sequential KV reads before any row is touched. Instead, a
//! statement reads one key, the catalog version, which every change to a descriptor or
//! a name increments in the same transaction (at [`catalog::version_key`]). Descriptors
//! read at version v are the descriptors at every timestamp where the version is v, so
//! the cache answers for a transaction that read v, whatever its timestamp.
//!
//! The version read is an ordinary transactional read, so a schema change that commits
//! after a statement read the version is ordered after that statement (its write of
//! the version is pushed above the read), exactly as if the statement had read the
//! descriptors themselves.
//!
//! HAZARD: a transaction that changed the catalog itself reads its own, uncommitted
//! version; it must neither use nor fill the cache (it might abort).
//! [`DescCache::version`] gives it no [`Cached`].

use std::collections::HashMap;

use cairn_txn::Txn;
use std::sync::Mutex;

use crate::catalog::{self, TableDesc};
use crate::error::Result;

/// The cache and the catalog version a transaction read, when the cache may serve it;
/// `None` reads the catalog directly.
pub type Cached<'a> = Option<(&'a DescCache, u64)>;

#[derive(Default)]
struct Entries {
    version: u64,
    databases: HashMap<String, u64>,
    tables: HashMap<(u64, String), TableDesc>,
}

/// Database ids and table descriptors of one catalog version.
#[derive(Default)]
pub struct DescCache {
    entries: Mutex<Entries>,
}

impl DescCache {
    /// Reads the catalog version in `txn`: what lets the transaction use the cache,
    /// or `None` if it may have changed the catalog itself.
    pub async fn version(&self, txn: &mut Txn) -> Result<Cached<'_>> {
        if txn.may_have_written(&catalog::version_key()) {
            return Ok(None);
        }
        Ok(Some((self, catalog::read_version(txn).await?)))
    }

    /// Looks up entries of version `v`, if that is the cached version.
    fn with<T>(&self, v: u64, f: impl FnOnce(&Entries) -> Option<T>) -> Option<T> {
        let e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if e.version == v { f(&e) } else { None }
    }

    /// Adds entries read at version `v`: a newer version replaces the cache, an older
    /// one (a transaction with an old read timestamp) leaves it alone.
    fn fill(&self, v: u64, f: impl FnOnce(&mut Entries)) {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if v > e.version || (e.databases.is_empty() && e.tables.is_empty()) {
            *e = Entries {
                version: v,
                ..Entries::default()
            };
        }
        if e.version == v {
            f(&mut e);
        }
    }
}

/// The id of database `name`, if it exists.
pub async fn database_id(txn: &mut Txn, cached: Cached<'_>, name: &str) -> Result<Option<u64>> {
    if let Some((cache, v)) = cached
        && let Some(id) = cache.with(v, |e| e.databases.get(name).copied())
    {
        return Ok(Some(id));
    }
    let id = catalog::get_database(txn, name).await?.map(|db| db.id);
    if let (Some((cache, v)), Some(id)) = (cached, id) {
        cache.fill(v, |e| {
            e.databases.insert(name.to_string(), id);
        });
    }
    Ok(id)
}

/// Table `name` of database `db_id`, if it exists.
pub async fn table(
    txn: &mut Txn,
    cached: Cached<'_>,
    db_id: u64,
    name: &str,
) -> Result<Option<TableDesc>> {
    let key = (db_id, name.to_string());
    if let Some((cache, v)) = cached
        && let Some(t) = cache.with(v, |e| e.tables.get(&key).cloned())
    {
        return Ok(Some(t));
    }
    let table = catalog::get_table(txn, db_id, name).await?;
    if let (Some((cache, v)), Some(t)) = (cached, &table) {
        cache.fill(v, |e| {
            e.tables.insert(key, t.clone());
        });
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, version: u64) -> TableDesc {
        TableDesc {
            id: 100,
            db_id: 50,
            name: name.into(),
            columns: Vec::new(),
            primary: catalog::IndexDesc {
                id: 1,
                name: format!("{name}_pkey"),
                columns: Vec::new(),
                unique: true,
            },
            indexes: Vec::new(),
            next_column_id: 1,
            next_index_id: 2,
            version,
        }
    }

    #[test]
    fn entries_answer_only_for_their_version() {
        let cache = DescCache::default();
        cache.fill(3, |e| {
            e.tables.insert((50, "t".into()), table("t", 1));
        });
        assert!(
            cache
                .with(3, |e| e.tables.get(&(50, "t".into())).cloned())
                .is_some()
        );
        assert!(
            cache
                .with(2, |e| e.tables.get(&(50, "t".into())).cloned())
                .is_none()
        );
        assert!(
            cache
                .with(4, |e| e.tables.get(&(50, "t".into())).cloned())
                .is_none()
        );
        // An older version does not replace a newer cache.
        cache.fill(2, |e| {
            e.tables.insert((50, "t".into()), table("t", 0));
        });
        assert_eq!(
            cache.with(3, |e| e.tables.get(&(50, "t".into())).map(|t| t.version)),
            Some(1)
        );
        // A newer one does, dropping what the old version knew.
        cache.fill(4, |e| {
            e.databases.insert("d".into(), 50);
        });
        assert!(
            cache
                .with(4, |e| e.tables.get(&(50, "t".into())).cloned())
                .is_none()
        );
        assert_eq!(cache.with(4, |e| e.databases.get("d").copied()), Some(50));
    }
}
