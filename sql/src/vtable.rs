//! Virtual tables of `pg_catalog` and `information_schema`, generated from the
//! catalog when scanned, so that psql's `\d` commands and drivers' introspection find
//! what they look for.
//!
//! OIDs: a table's OID is its descriptor id, a database's too; an index's OID is
//! `table id * 1000 + index id`, which stays unique while a table has fewer than a
//! thousand indexes; types use Postgres' OIDs, namespaces the fixed OIDs below.

use cairn_txn::Txn;

use crate::catalog::{self, TableDesc};
use crate::error::Result;
use crate::expr::Row;
use crate::types::{DataType, Value};

pub const PG_CATALOG_OID: i64 = 11;
pub const PUBLIC_OID: i64 = 2200;
pub const INFORMATION_SCHEMA_OID: i64 = 13_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirtualTable {
    PgNamespace,
    PgClass,
    PgAttribute,
    PgType,
    PgIndex,
    PgDatabase,
    PgRoles,
    PgAttrdef,
    PgConstraint,
    PgDescription,
    PgInherits,
    PgAm,
    PgSettings,
    PgTables,
    InfoTables,
    InfoColumns,
    InfoSchemata,
    PgCollation,
    PgStatisticExt,
    PgPublication,
    PgPublicationNamespace,
    PgPublicationRel,
    PgTrigger,
    PgRewrite,
    PgPolicy,
    PgProc,
    PgExtension,
    PgEnum,
    PgRange,
    PgTablespace,
}

/// Names that resolve to pg_catalog without a schema (Postgres searches pg_catalog
/// first).
pub fn is_pg_catalog_name(name: &str) -> bool {
    VirtualTable::by_name(&format!("pg_catalog.{name}")).is_some()
}

impl VirtualTable {
    /// Every virtual table.
    pub const ALL: [VirtualTable; 30] = [
        VirtualTable::PgNamespace,
        VirtualTable::PgClass,
        VirtualTable::PgAttribute,
        VirtualTable::PgType,
        VirtualTable::PgIndex,
        VirtualTable::PgDatabase,
        VirtualTable::PgRoles,
        VirtualTable::PgAttrdef,
        VirtualTable::PgConstraint,
        VirtualTable::PgDescription,
        VirtualTable::PgInherits,
        VirtualTable::PgAm,
        VirtualTable::PgSettings,
        VirtualTable::PgTables,
        VirtualTable::InfoTables,
        VirtualTable::InfoColumns,
        VirtualTable::InfoSchemata,
        VirtualTable::PgCollation,
        VirtualTable::PgStatisticExt,
        VirtualTable::PgPublication,
        VirtualTable::PgPublicationNamespace,
        VirtualTable::PgPublicationRel,
        VirtualTable::PgTrigger,
        VirtualTable::PgRewrite,
        VirtualTable::PgPolicy,
        VirtualTable::PgProc,
        VirtualTable::PgExtension,
        VirtualTable::PgEnum,
        VirtualTable::PgRange,
        VirtualTable::PgTablespace,
    ];

    pub fn by_name(key: &str) -> Option<VirtualTable> {
        Some(match key {
            "pg_catalog.pg_namespace" => VirtualTable::PgNamespace,
            "pg_catalog.pg_class" => VirtualTable::PgClass,
            "pg_catalog.pg_attribute" => VirtualTable::PgAttribute,
            "pg_catalog.pg_type" => VirtualTable::PgType,
            "pg_catalog.pg_index" => VirtualTable::PgIndex,
            "pg_catalog.pg_database" => VirtualTable::PgDatabase,
            "pg_catalog.pg_roles" | "pg_catalog.pg_user" => VirtualTable::PgRoles,
            "pg_catalog.pg_attrdef" => VirtualTable::PgAttrdef,
            "pg_catalog.pg_constraint" => VirtualTable::PgConstraint,
            "pg_catalog.pg_description" => VirtualTable::PgDescription,
            "pg_catalog.pg_inherits" => VirtualTable::PgInherits,
            "pg_catalog.pg_am" => VirtualTable::PgAm,
            "pg_catalog.pg_settings" => VirtualTable::PgSettings,
            "pg_catalog.pg_tables" => VirtualTable::PgTables,
            "information_schema.tables" => VirtualTable::InfoTables,
            "information_schema.columns" => VirtualTable::InfoColumns,
            "information_schema.schemata" => VirtualTable::InfoSchemata,
            "pg_catalog.pg_collation" => VirtualTable::PgCollation,
            "pg_catalog.pg_statistic_ext" => VirtualTable::PgStatisticExt,
            "pg_catalog.pg_publication" => VirtualTable::PgPublication,
            "pg_catalog.pg_publication_namespace" => VirtualTable::PgPublicationNamespace,
            "pg_catalog.pg_publication_rel" => VirtualTable::PgPublicationRel,
            "pg_catalog.pg_trigger" => VirtualTable::PgTrigger,
            "pg_catalog.pg_rewrite" => VirtualTable::PgRewrite,
            "pg_catalog.pg_policy" => VirtualTable::PgPolicy,
            "pg_catalog.pg_proc" => VirtualTable::PgProc,
            "pg_catalog.pg_extension" => VirtualTable::PgExtension,
            "pg_catalog.pg_enum" => VirtualTable::PgEnum,
            "pg_catalog.pg_range" => VirtualTable::PgRange,
            "pg_catalog.pg_tablespace" => VirtualTable::PgTablespace,
            _ => return None,
        })
    }

    pub fn columns(&self) -> Vec<(String, DataType)> {
        use DataType::*;
        let cols: &[(&str, DataType)] = match self {
            VirtualTable::PgNamespace => &[("oid", Oid), ("nspname", Name), ("nspowner", Oid)],
            VirtualTable::PgClass => &[
                ("oid", Oid),
                ("relname", Name),
                ("relnamespace", Oid),
                ("reltype", Oid),
                ("relowner", Oid),
                ("relam", Oid),
                ("reltuples", Float4),
                ("relhasindex", Bool),
                ("relpersistence", Text),
                ("relkind", Text),
                ("relnatts", Int2),
                ("relchecks", Int2),
                ("relhasrules", Bool),
                ("relhastriggers", Bool),
                ("relrowsecurity", Bool),
                ("relforcerowsecurity", Bool),
                ("relispartition", Bool),
                ("reltablespace", Oid),
                ("reloftype", Oid),
                ("relreplident", Text),
                ("relpartbound", Text),
                ("reloptions", Text),
                ("relacl", Text),
                ("reltoastrelid", Oid),
                ("relpages", Int4),
                ("relallvisible", Int4),
                ("relisshared", Bool),
                ("relfilenode", Oid),
            ],
            VirtualTable::PgAttribute => &[
                ("attrelid", Oid),
                ("attname", Name),
                ("atttypid", Oid),
                ("attlen", Int2),
                ("attnum", Int2),
                ("atttypmod", Int4),
                ("attnotnull", Bool),
                ("atthasdef", Bool),
                ("attisdropped", Bool),
                ("attidentity", Text),
                ("attgenerated", Text),
                ("attcollation", Oid),
            ],
            VirtualTable::PgType => &[
                ("oid", Oid),
                ("typname", Name),
                ("typnamespace", Oid),
                ("typlen", Int2),
                ("typtype", Text),
                ("typcategory", Text),
                ("typelem", Oid),
                ("typarray", Oid),
                ("typbasetype", Oid),
                ("typtypmod", Int4),
                ("typnotnull", Bool),
                ("typrelid", Oid),
                ("typinput", Oid),
                ("typoutput", Oid),
                ("typreceive", Oid),
                ("typdelim", Text),
                ("typcollation", Oid),
                ("typbyval", Bool),
                ("typalign", Text),
                ("typstorage", Text),
                ("typdefault", Text),
                ("typisdefined", Bool),
            ],
            VirtualTable::PgIndex => &[
                ("indexrelid", Oid),
                ("indrelid", Oid),
                ("indnatts", Int2),
                ("indisunique", Bool),
                ("indisprimary", Bool),
                ("indisclustered", Bool),
                ("indisvalid", Bool),
                ("indisreplident", Bool),
                ("indkey", Text),
                ("indisexclusion", Bool),
                ("indimmediate", Bool),
            ],
            VirtualTable::PgDatabase => &[
                ("oid", Oid),
                ("datname", Name),
                ("datdba", Oid),
                ("encoding", Int4),
                ("datcollate", Text),
                ("datctype", Text),
                ("datistemplate", Bool),
                ("datallowconn", Bool),
                ("datacl", Text),
                ("datlocprovider", Text),
                ("daticulocale", Text),
                ("datconnlimit", Int4),
                ("dattablespace", Oid),
            ],
            VirtualTable::PgRoles => &[
                ("oid", Oid),
                ("rolname", Name),
                ("rolsuper", Bool),
                ("rolinherit", Bool),
                ("rolcreaterole", Bool),
                ("rolcreatedb", Bool),
                ("rolcanlogin", Bool),
                ("rolreplication", Bool),
                ("rolconnlimit", Int4),
                ("rolvaliduntil", TimestampTz),
                ("rolbypassrls", Bool),
            ],
            VirtualTable::PgAttrdef => &[
                ("oid", Oid),
                ("adrelid", Oid),
                ("adnum", Int2),
                ("adbin", Text),
            ],
            VirtualTable::PgConstraint => &[
                ("oid", Oid),
                ("conname", Name),
                ("connamespace", Oid),
                ("contype", Text),
                ("conrelid", Oid),
                ("conindid", Oid),
                ("conkey", Text),
                ("confrelid", Oid),
                ("condeferrable", Bool),
                ("condeferred", Bool),
                ("convalidated", Bool),
                ("conparentid", Oid),
            ],
            VirtualTable::PgDescription => &[
                ("objoid", Oid),
                ("classoid", Oid),
                ("objsubid", Int4),
                ("description", Text),
            ],
            VirtualTable::PgInherits => &[
                ("inhrelid", Oid),
                ("inhparent", Oid),
                ("inhseqno", Int4),
                ("inhdetachpending", Bool),
            ],
            VirtualTable::PgCollation => &[
                ("oid", Oid),
                ("collname", Name),
                ("collnamespace", Oid),
                ("collprovider", Text),
            ],
            VirtualTable::PgStatisticExt => &[
                ("oid", Oid),
                ("stxrelid", Oid),
                ("stxname", Name),
                ("stxnamespace", Oid),
                ("stxkind", Text),
                ("stxstattarget", Int4),
            ],
            VirtualTable::PgPublication => &[
                ("oid", Oid),
                ("pubname", Name),
                ("puballtables", Bool),
                ("pubinsert", Bool),
                ("pubupdate", Bool),
                ("pubdelete", Bool),
                ("pubtruncate", Bool),
                ("pubviaroot", Bool),
            ],
            VirtualTable::PgPublicationNamespace => {
                &[("oid", Oid), ("pnpubid", Oid), ("pnnspid", Oid)]
            }
            VirtualTable::PgPublicationRel => &[
                ("oid", Oid),
                ("prpubid", Oid),
                ("prrelid", Oid),
                ("prqual", Text),
                ("prattrs", Text),
            ],
            VirtualTable::PgTrigger => &[
                ("oid", Oid),
                ("tgrelid", Oid),
                ("tgname", Name),
                ("tgenabled", Text),
                ("tgisinternal", Bool),
                ("tgparentid", Oid),
            ],
            VirtualTable::PgRewrite => &[
                ("oid", Oid),
                ("rulename", Name),
                ("ev_class", Oid),
                ("ev_type", Text),
                ("ev_enabled", Text),
            ],
            VirtualTable::PgPolicy => &[
                ("oid", Oid),
                ("polname", Name),
                ("polrelid", Oid),
                ("polcmd", Text),
                ("polpermissive", Bool),
                ("polroles", Text),
                ("polqual", Text),
                ("polwithcheck", Text),
            ],
            VirtualTable::PgProc => &[
                ("oid", Oid),
                ("proname", Name),
                ("pronamespace", Oid),
                ("prokind", Text),
                ("prorettype", Oid),
                ("proargtypes", Text),
            ],
            VirtualTable::PgExtension => &[
                ("oid", Oid),
                ("extname", Name),
                ("extnamespace", Oid),
                ("extversion", Text),
            ],
            VirtualTable::PgEnum => &[
                ("oid", Oid),
                ("enumtypid", Oid),
                ("enumsortorder", Float4),
                ("enumlabel", Name),
            ],
            VirtualTable::PgRange => &[("rngtypid", Oid), ("rngsubtype", Oid)],
            VirtualTable::PgTablespace => &[("oid", Oid), ("spcname", Name), ("spcowner", Oid)],
            VirtualTable::PgAm => &[("oid", Oid), ("amname", Name), ("amtype", Text)],
            VirtualTable::PgSettings => &[("name", Text), ("setting", Text)],
            VirtualTable::PgTables => &[
                ("schemaname", Name),
                ("tablename", Name),
                ("tableowner", Name),
                ("hasindexes", Bool),
            ],
            VirtualTable::InfoTables => &[
                ("table_catalog", Text),
                ("table_schema", Text),
                ("table_name", Text),
                ("table_type", Text),
            ],
            VirtualTable::InfoColumns => &[
                ("table_catalog", Text),
                ("table_schema", Text),
                ("table_name", Text),
                ("column_name", Text),
                ("ordinal_position", Int4),
                ("column_default", Text),
                ("is_nullable", Text),
                ("data_type", Text),
                ("character_maximum_length", Int4),
                ("udt_name", Text),
            ],
            VirtualTable::InfoSchemata => &[
                ("catalog_name", Text),
                ("schema_name", Text),
                ("schema_owner", Text),
            ],
        };
        cols.iter().map(|(n, t)| (n.to_string(), *t)).collect()
    }

    /// The table's rows, as seen by `txn` in database `db_id`.
    pub async fn rows(&self, txn: &mut Txn, db_id: u64, db_name: &str) -> Result<Vec<Row>> {
        let text = |s: &str| Value::Text(s.to_string());
        let int = |i: i64| Value::Int(i);
        let b = Value::Bool;
        Ok(match self {
            VirtualTable::PgNamespace => vec![
                vec![int(PG_CATALOG_OID), text("pg_catalog"), int(10)],
                vec![int(PUBLIC_OID), text("public"), int(10)],
                vec![
                    int(INFORMATION_SCHEMA_OID),
                    text("information_schema"),
                    int(10),
                ],
            ],
            VirtualTable::PgClass => {
                let mut rows = Vec::new();
                for t in catalog::list_tables(txn, db_id).await? {
                    rows.push(class_row(
                        t.id as i64,
                        &t.name,
                        "r",
                        t.columns.len() as i64,
                        !t.indexes.is_empty(),
                    ));
                    for ix in visible_indexes(&t) {
                        rows.push(class_row(
                            index_oid(&t, ix.id),
                            &ix.name,
                            "i",
                            ix.columns.len() as i64,
                            false,
                        ));
                    }
                }
                rows
            }
            VirtualTable::PgAttribute => {
                let mut rows = Vec::new();
                for t in catalog::list_tables(txn, db_id).await? {
                    for (i, c) in t.columns.iter().enumerate() {
                        rows.push(vec![
                            int(t.id as i64),
                            text(&c.name),
                            int(i64::from(c.ty.oid())),
                            int(i64::from(c.ty.wire_size())),
                            int(if c.hidden {
                                -1 - i as i64
                            } else {
                                i as i64 + 1
                            }),
                            int(typmod(c.ty)),
                            b(!c.nullable),
                            b(c.default.is_some()),
                            b(false),
                            text(""),
                            text(""),
                            int(0),
                        ]);
                    }
                    for ix in visible_indexes(&t) {
                        for (n, (col, _)) in ix.columns.iter().enumerate() {
                            let Ok(pos) = t.column_position(*col) else {
                                continue;
                            };
                            let c = &t.columns[pos];
                            rows.push(vec![
                                int(index_oid(&t, ix.id)),
                                text(&c.name),
                                int(i64::from(c.ty.oid())),
                                int(i64::from(c.ty.wire_size())),
                                int(n as i64 + 1),
                                int(typmod(c.ty)),
                                b(false),
                                b(false),
                                b(false),
                                text(""),
                                text(""),
                                int(0),
                            ]);
                        }
                    }
                }
                rows
            }
            VirtualTable::PgType => {
                use DataType::*;
                [
                    Bool,
                    Bytea,
                    Name,
                    Int8,
                    Int2,
                    Int4,
                    Text,
                    Oid,
                    Float4,
                    Float8,
                    Char(None),
                    Varchar(None),
                    Date,
                    Timestamp,
                    TimestampTz,
                    Numeric,
                    Uuid,
                ]
                .iter()
                .map(|t| {
                    let name = match t {
                        Bool => "bool",
                        Bytea => "bytea",
                        Name => "name",
                        Int8 => "int8",
                        Int2 => "int2",
                        Int4 => "int4",
                        Text => "text",
                        Oid => "oid",
                        Float4 => "float4",
                        Float8 => "float8",
                        Char(_) => "bpchar",
                        Varchar(_) => "varchar",
                        Date => "date",
                        Timestamp => "timestamp",
                        TimestampTz => "timestamptz",
                        Numeric => "numeric",
                        _ => "uuid",
                    };
                    vec![
                        int(i64::from(t.oid())),
                        text(name),
                        int(PG_CATALOG_OID),
                        int(i64::from(t.wire_size())),
                        text("b"),
                        text(if t.is_numeric() {
                            "N"
                        } else if t.is_text() {
                            "S"
                        } else {
                            "U"
                        }),
                        int(0),
                        int(0),
                        int(0),
                        int(-1),
                        b(false),
                        int(0),
                        int(0),
                        int(0),
                        int(0),
                        text(","),
                        int(if t.is_text() { 100 } else { 0 }),
                        b(t.wire_size() > 0 && t.wire_size() <= 8),
                        text("i"),
                        text("p"),
                        Value::Null,
                        b(true),
                    ]
                })
                .collect()
            }
            VirtualTable::PgIndex => {
                let mut rows = Vec::new();
                for t in catalog::list_tables(txn, db_id).await? {
                    for ix in visible_indexes(&t) {
                        let key: Vec<String> = ix
                            .columns
                            .iter()
                            .filter_map(|(c, _)| t.column_position(*c).ok())
                            .map(|p| (p + 1).to_string())
                            .collect();
                        rows.push(vec![
                            int(index_oid(&t, ix.id)),
                            int(t.id as i64),
                            int(ix.columns.len() as i64),
                            b(ix.unique || ix.id == t.primary.id),
                            b(ix.id == t.primary.id),
                            b(false),
                            b(true),
                            b(false),
                            text(&key.join(" ")),
                            b(false),
                            b(true),
                        ]);
                    }
                }
                rows
            }
            VirtualTable::PgDatabase => catalog::list_databases(txn)
                .await?
                .into_iter()
                .map(|d| {
                    vec![
                        int(d.id as i64),
                        text(&d.name),
                        int(10),
                        int(6),
                        text("C.UTF-8"),
                        text("C.UTF-8"),
                        b(false),
                        b(true),
                        Value::Null,
                        text("c"),
                        Value::Null,
                        int(-1),
                        int(1663),
                    ]
                })
                .collect(),
            VirtualTable::PgRoles => {
                let role = |oid: i64, name: &str, superuser: bool| {
                    vec![
                        int(oid),
                        text(name),
                        b(superuser),
                        b(true),
                        b(superuser),
                        b(superuser),
                        b(true),
                        b(false),
                        int(-1),
                        Value::Null,
                        b(superuser),
                    ]
                };
                let mut rows = vec![role(10, "root", true)];
                for (i, u) in catalog::list_users(txn).await?.iter().enumerate() {
                    if u.name != "root" {
                        rows.push(role(20_000 + i as i64, &u.name, false));
                    }
                }
                rows
            }
            VirtualTable::PgAttrdef => {
                let mut rows = Vec::new();
                for t in catalog::list_tables(txn, db_id).await? {
                    for (i, c) in t.columns.iter().enumerate() {
                        if let Some(d) = &c.default {
                            rows.push(vec![
                                int(t.id as i64 * 1000 + i as i64),
                                int(t.id as i64),
                                int(i as i64 + 1),
                                text(d),
                            ]);
                        }
                    }
                }
                rows
            }
            VirtualTable::PgConstraint => {
                let mut rows = Vec::new();
                for t in catalog::list_tables(txn, db_id).await? {
                    for ix in visible_indexes(&t) {
                        if !(ix.unique || ix.id == t.primary.id) {
                            continue;
                        }
                        let primary = ix.id == t.primary.id;
                        if primary && t.columns.iter().any(|c| c.hidden) {
                            continue;
                        }
                        rows.push(vec![
                            int(index_oid(&t, ix.id)),
                            text(&ix.name),
                            int(PUBLIC_OID),
                            text(if primary { "p" } else { "u" }),
                            int(t.id as i64),
                            int(index_oid(&t, ix.id)),
                            Value::Null,
                            int(0),
                            b(false),
                            b(false),
                            b(true),
                            int(0),
                        ]);
                    }
                }
                rows
            }
            VirtualTable::PgDescription
            | VirtualTable::PgInherits
            | VirtualTable::PgStatisticExt
            | VirtualTable::PgPublication
            | VirtualTable::PgPublicationNamespace
            | VirtualTable::PgPublicationRel
            | VirtualTable::PgTrigger
            | VirtualTable::PgRewrite
            | VirtualTable::PgPolicy
            | VirtualTable::PgProc
            | VirtualTable::PgExtension
            | VirtualTable::PgEnum
            | VirtualTable::PgRange => vec![],
            VirtualTable::PgCollation => vec![vec![
                int(100),
                text("default"),
                int(PG_CATALOG_OID),
                text("d"),
            ]],
            VirtualTable::PgTablespace => vec![
                vec![int(1663), text("pg_default"), int(10)],
                vec![int(1664), text("pg_global"), int(10)],
            ],
            VirtualTable::PgAm => vec![vec![int(403), text("btree"), text("i")]],
            VirtualTable::PgSettings => vec![],
            VirtualTable::PgTables => catalog::list_tables(txn, db_id)
                .await?
                .into_iter()
                .map(|t| {
                    vec![
                        text("public"),
                        text(&t.name),
                        text("root"),
                        b(!t.indexes.is_empty()),
                    ]
                })
                .collect(),
            VirtualTable::InfoTables => catalog::list_tables(txn, db_id)
                .await?
                .into_iter()
                .map(|t| {
                    vec![
                        text(db_name),
                        text("public"),
                        text(&t.name),
                        text("BASE TABLE"),
                    ]
                })
                .collect(),
            VirtualTable::InfoColumns => {
                let mut rows = Vec::new();
                for t in catalog::list_tables(txn, db_id).await? {
                    for (i, c) in t.columns.iter().filter(|c| !c.hidden).enumerate() {
                        let len = match c.ty {
                            DataType::Varchar(Some(n)) | DataType::Char(Some(n)) => {
                                int(i64::from(n))
                            }
                            _ => Value::Null,
                        };
                        rows.push(vec![
                            text(db_name),
                            text("public"),
                            text(&t.name),
                            text(&c.name),
                            int(i as i64 + 1),
                            c.default.as_deref().map(text).unwrap_or(Value::Null),
                            text(if c.nullable { "YES" } else { "NO" }),
                            text(&c.ty.base_name()),
                            len,
                            text(&c.ty.name()),
                        ]);
                    }
                }
                rows
            }
            VirtualTable::InfoSchemata => ["public", "pg_catalog", "information_schema"]
                .iter()
                .map(|s| vec![text(db_name), text(s), text("root")])
                .collect(),
        })
    }
}

fn typmod(ty: DataType) -> i64 {
    match ty {
        DataType::Varchar(Some(n)) | DataType::Char(Some(n)) => i64::from(n) + 4,
        _ => -1,
    }
}

/// The indexes Postgres would show: a table without a declared primary key has no
/// primary index (its hidden row id key stays hidden).
pub fn visible_indexes(t: &TableDesc) -> impl Iterator<Item = &crate::catalog::IndexDesc> {
    let hidden_pk = t.columns.iter().any(|c| c.hidden);
    t.all_indexes()
        .filter(move |ix| !(hidden_pk && ix.id == t.primary.id))
}

/// The OID of an index.
pub fn index_oid(t: &TableDesc, index_id: u64) -> i64 {
    (t.id * 1000 + index_id) as i64
}

fn class_row(oid: i64, name: &str, kind: &str, natts: i64, has_index: bool) -> Row {
    let text = |s: &str| Value::Text(s.to_string());
    vec![
        Value::Int(oid),
        text(name),
        Value::Int(PUBLIC_OID),
        Value::Int(0),
        Value::Int(10),
        Value::Int(if kind == "i" { 403 } else { 2 }),
        Value::Float(-1.0),
        Value::Bool(has_index || kind == "r"),
        text("p"),
        text(kind),
        Value::Int(natts),
        Value::Int(0),
        Value::Bool(false),
        Value::Bool(false),
        Value::Bool(false),
        Value::Bool(false),
        Value::Bool(false),
        Value::Int(0),
        Value::Int(0),
        text("d"),
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Int(0),
        Value::Int(0),
        Value::Int(0),
        Value::Bool(false),
        Value::Int(oid),
    ]
}
