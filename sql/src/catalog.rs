//! The SQL catalog, stored in KV and read through the statement's transaction.
//!
//! ```text
//!   /System/Namespace/0/<database name>        -> database id
//!   /System/Namespace/<database id>/<table>    -> table id
//!   /System/Descriptor/<id>                    -> Descriptor (postcard)
//!   /System/IDGen/descriptor                   -> the next descriptor id
//! ```
//!
//! Because every lookup is a read in the statement's own transaction, DDL is
//! transactional like any other write: a CREATE TABLE inside BEGIN is visible to that
//! transaction only until it commits, and a statement that read a descriptor conflicts
//! (serializably) with a concurrent change to it. Each descriptor carries a version,
//! bumped on every change, for caches above this layer.
//!
//! One schema, `public`, exists in every database. Databases `defaultdb` and `postgres`
//! are created by [`bootstrap`].

use cairn_kv::keys::{self, Direction};
use cairn_txn::Txn;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, SqlState, internal};
use crate::types::DataType;

/// The parent id of databases in the namespace.
pub const ROOT_ID: u64 = 0;
/// The first descriptor id; smaller ids are reserved.
pub const FIRST_ID: u64 = 100;
/// The id of every table's primary index.
pub const PRIMARY_INDEX_ID: u64 = 1;
/// The name of the hidden row id column of a table without a PRIMARY KEY.
pub const ROWID: &str = "rowid";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Descriptor {
    Database(DatabaseDesc),
    Table(TableDesc),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatabaseDesc {
    pub id: u64,
    pub name: String,
}

/// A table: its columns, primary index and secondary indexes.
///
/// Invariants:
/// - column ids and index ids are unique and never reused (`next_*` only grow);
/// - the primary index's columns exist and are NOT NULL;
/// - `version` grows by one on every change written with [`put_table`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableDesc {
    pub id: u64,
    pub db_id: u64,
    pub name: String,
    pub columns: Vec<ColumnDesc>,
    pub primary: IndexDesc,
    pub indexes: Vec<IndexDesc>,
    pub next_column_id: u32,
    pub next_index_id: u64,
    pub version: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnDesc {
    pub id: u32,
    pub name: String,
    pub ty: DataType,
    pub nullable: bool,
    /// The DEFAULT expression, as SQL text.
    pub default: Option<String>,
    /// Hidden columns (the row id) are left out of `*`.
    pub hidden: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexDesc {
    pub id: u64,
    pub name: String,
    pub columns: Vec<(u32, Direction)>,
    pub unique: bool,
}

impl TableDesc {
    /// The position of a column (by id) in a row.
    pub fn column_position(&self, id: u32) -> Result<usize> {
        self.columns
            .iter()
            .position(|c| c.id == id)
            .ok_or_else(|| internal(format!("column id {id} not in table {}", self.name)))
    }

    /// The column with the given name.
    pub fn column(&self, name: &str) -> Option<(usize, &ColumnDesc)> {
        self.columns
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name)
    }

    /// The positions of the primary key columns in a row.
    pub fn primary_positions(&self) -> Result<Vec<usize>> {
        self.primary
            .columns
            .iter()
            .map(|(c, _)| self.column_position(*c))
            .collect()
    }

    /// Every index: the primary first.
    pub fn all_indexes(&self) -> impl Iterator<Item = &IndexDesc> {
        std::iter::once(&self.primary).chain(self.indexes.iter())
    }
}

fn encode(desc: &Descriptor) -> Result<Vec<u8>> {
    postcard::to_stdvec(desc).map_err(|e| internal(format!("encoding descriptor: {e}")))
}

fn decode(bytes: &[u8]) -> Result<Descriptor> {
    postcard::from_bytes(bytes).map_err(|e| internal(format!("decoding descriptor: {e}")))
}

fn decode_id(bytes: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| internal("namespace entry is not an id"))?;
    Ok(u64::from_be_bytes(arr))
}

/// The key of the catalog version: a counter every change to a descriptor or a
/// namespace entry increments, in its own transaction (see `desc_cache`).
pub fn version_key() -> Vec<u8> {
    keys::id_generator_key("catalog_version")
}

/// The catalog version as `txn` reads it (0 before the first change).
pub async fn read_version(txn: &mut Txn) -> Result<u64> {
    match txn.get(&version_key()).await? {
        Some(v) => decode_id(&v),
        None => Ok(0),
    }
}

/// Marks a change to the catalog: cached descriptors of the old version stop
/// answering once `txn` commits.
///
/// HAZARD: every data statement reads the version, so until `txn` ends, its intent on
/// the version makes every statement on every node wait for it. Callers bump last,
/// after any long work (a table's rows deleted or rewritten), so a schema change
/// statement holds it only briefly; a transaction block that changes the schema and
/// then stays open stalls the cluster's statements until it ends. Descriptor leases
/// would remove this.
async fn bump_version(txn: &mut Txn) -> Result<()> {
    let next = read_version(txn).await? + 1;
    txn.put(&version_key(), &next.to_be_bytes()).await?;
    Ok(())
}

/// Allocates a new descriptor id in `txn`.
pub async fn allocate_id(txn: &mut Txn) -> Result<u64> {
    let key = keys::id_generator_key("descriptor");
    let next = match txn.get(&key).await? {
        Some(v) => decode_id(&v)?,
        None => FIRST_ID,
    };
    txn.put(&key, &(next + 1).to_be_bytes()).await?;
    Ok(next)
}

async fn lookup(txn: &mut Txn, parent: u64, name: &str) -> Result<Option<u64>> {
    match txn.get(&keys::namespace_key(parent, name)).await? {
        Some(v) => Ok(Some(decode_id(&v)?)),
        None => Ok(None),
    }
}

pub async fn get_descriptor(txn: &mut Txn, id: u64) -> Result<Option<Descriptor>> {
    match txn.get(&keys::descriptor_key(id)).await? {
        Some(v) => Ok(Some(decode(&v)?)),
        None => Ok(None),
    }
}

pub async fn get_database(txn: &mut Txn, name: &str) -> Result<Option<DatabaseDesc>> {
    let Some(id) = lookup(txn, ROOT_ID, name).await? else {
        return Ok(None);
    };
    match get_descriptor(txn, id).await? {
        Some(Descriptor::Database(db)) => Ok(Some(db)),
        _ => Err(internal(format!(
            "namespace entry of database {name} dangles"
        ))),
    }
}

pub async fn get_table(txn: &mut Txn, db_id: u64, name: &str) -> Result<Option<TableDesc>> {
    let Some(id) = lookup(txn, db_id, name).await? else {
        return Ok(None);
    };
    match get_descriptor(txn, id).await? {
        Some(Descriptor::Table(t)) => Ok(Some(t)),
        _ => Err(internal(format!("namespace entry of table {name} dangles"))),
    }
}

/// The table, or 42P01.
pub async fn must_get_table(txn: &mut Txn, db_id: u64, name: &str) -> Result<TableDesc> {
    get_table(txn, db_id, name).await?.ok_or_else(|| {
        Error::new(
            SqlState::UndefinedTable,
            format!("relation \"{name}\" does not exist"),
        )
    })
}

/// Every child of a parent, by name.
async fn list(txn: &mut Txn, parent: u64) -> Result<Vec<Descriptor>> {
    let prefix = keys::namespace_prefix(parent);
    let end = keys::prefix_end(&prefix);
    let entries = txn.scan(&prefix, &end, 0).await?;
    let mut out = Vec::with_capacity(entries.len());
    for (_, v) in entries {
        if let Some(d) = get_descriptor(txn, decode_id(&v)?).await? {
            out.push(d);
        }
    }
    Ok(out)
}

pub async fn list_databases(txn: &mut Txn) -> Result<Vec<DatabaseDesc>> {
    Ok(list(txn, ROOT_ID)
        .await?
        .into_iter()
        .filter_map(|d| match d {
            Descriptor::Database(db) => Some(db),
            Descriptor::Table(_) => None,
        })
        .collect())
}

pub async fn list_tables(txn: &mut Txn, db_id: u64) -> Result<Vec<TableDesc>> {
    Ok(list(txn, db_id)
        .await?
        .into_iter()
        .filter_map(|d| match d {
            Descriptor::Table(t) => Some(t),
            Descriptor::Database(_) => None,
        })
        .collect())
}

pub async fn create_database(txn: &mut Txn, name: &str) -> Result<DatabaseDesc> {
    if lookup(txn, ROOT_ID, name).await?.is_some() {
        return Err(Error::new(
            SqlState::DuplicateDatabase,
            format!("database \"{name}\" already exists"),
        ));
    }
    bump_version(txn).await?;
    let id = allocate_id(txn).await?;
    let db = DatabaseDesc {
        id,
        name: name.to_string(),
    };
    txn.put(
        &keys::descriptor_key(id),
        &encode(&Descriptor::Database(db.clone()))?,
    )
    .await?;
    txn.put(&keys::namespace_key(ROOT_ID, name), &id.to_be_bytes())
        .await?;
    Ok(db)
}

/// Drops a database and every table in it (their rows included).
pub async fn drop_database(txn: &mut Txn, db: &DatabaseDesc) -> Result<()> {
    for table in list_tables(txn, db.id).await? {
        drop_table(txn, &table).await?;
    }
    bump_version(txn).await?;
    txn.delete(&keys::descriptor_key(db.id)).await?;
    txn.delete(&keys::namespace_key(ROOT_ID, &db.name)).await?;
    Ok(())
}

/// Writes a new table's descriptor and name; 42P07 if the name is taken.
pub async fn create_table(txn: &mut Txn, table: &TableDesc) -> Result<()> {
    if lookup(txn, table.db_id, &table.name).await?.is_some() {
        return Err(Error::new(
            SqlState::DuplicateTable,
            format!("relation \"{}\" already exists", table.name),
        ));
    }
    bump_version(txn).await?;
    txn.put(
        &keys::descriptor_key(table.id),
        &encode(&Descriptor::Table(table.clone()))?,
    )
    .await?;
    txn.put(
        &keys::namespace_key(table.db_id, &table.name),
        &table.id.to_be_bytes(),
    )
    .await?;
    Ok(())
}

/// Writes a changed table descriptor, bumping its version.
pub async fn put_table(txn: &mut Txn, table: &mut TableDesc) -> Result<()> {
    bump_version(txn).await?;
    table.version += 1;
    txn.put(
        &keys::descriptor_key(table.id),
        &encode(&Descriptor::Table(table.clone()))?,
    )
    .await?;
    Ok(())
}

/// Deletes a table: its rows, its name and its descriptor.
pub async fn drop_table(txn: &mut Txn, table: &TableDesc) -> Result<()> {
    let prefix = keys::table_prefix(table.id);
    txn.delete_range(&prefix, &keys::prefix_end(&prefix))
        .await?;
    bump_version(txn).await?;
    txn.delete(&keys::namespace_key(table.db_id, &table.name))
        .await?;
    txn.delete(&keys::descriptor_key(table.id)).await?;
    Ok(())
}

/// A SQL user: its name and SCRAM verifier (none: the user cannot log in with a
/// password).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: String,
    pub verifier: Option<String>,
}

pub async fn get_user(txn: &mut Txn, name: &str) -> Result<Option<UserRecord>> {
    match txn.get(&keys::user_key(name)).await? {
        Some(v) => postcard::from_bytes(&v)
            .map(Some)
            .map_err(|e| internal(format!("decoding user: {e}"))),
        None => Ok(None),
    }
}

pub async fn put_user(txn: &mut Txn, user: &UserRecord) -> Result<()> {
    let bytes = postcard::to_stdvec(user).map_err(|e| internal(format!("encoding user: {e}")))?;
    txn.put(&keys::user_key(&user.name), &bytes).await?;
    Ok(())
}

pub async fn delete_user(txn: &mut Txn, name: &str) -> Result<()> {
    txn.delete(&keys::user_key(name)).await?;
    Ok(())
}

pub async fn list_users(txn: &mut Txn) -> Result<Vec<UserRecord>> {
    let (start, end) = keys::user_span();
    txn.scan(&start, &end, 0)
        .await?
        .into_iter()
        .map(|(_, v)| postcard::from_bytes(&v).map_err(|e| internal(format!("decoding user: {e}"))))
        .collect()
}

/// Creates the databases every cluster has (`defaultdb`, `postgres`), if missing.
/// Safe to run on every node at every start: concurrent runs serialize.
pub async fn bootstrap(txn: &mut Txn) -> Result<()> {
    for name in ["defaultdb", "postgres"] {
        if lookup(txn, ROOT_ID, name).await?.is_none() {
            create_database(txn, name).await?;
        }
    }
    Ok(())
}
