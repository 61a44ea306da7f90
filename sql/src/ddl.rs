//! Schema changes: CREATE/DROP of databases, tables and indexes, TRUNCATE, and ALTER
//! TABLE ADD COLUMN. Each runs as ordinary reads and writes in the statement's
//! transaction, so it commits or aborts with it.

use cairn_kv::keys::{self, Direction};
use cairn_txn::Txn;
use sqlparser::ast;

use crate::catalog::{self, ColumnDesc, IndexDesc, PRIMARY_INDEX_ID, ROWID, TableDesc};
use crate::error::{Error, Result, SqlState, unsupported};
use crate::plan::{data_type, object_name};
use crate::rowcodec;
use crate::types::DataType;

fn ident(i: &ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// The columns of an index definition: names and directions.
fn index_columns(table: &TableDesc, cols: &[ast::IndexColumn]) -> Result<Vec<(u32, Direction)>> {
    let mut out: Vec<(u32, Direction)> = Vec::new();
    for c in cols {
        let name = match &c.column.expr {
            ast::Expr::Identifier(i) => ident(i),
            other => return Err(unsupported(format!("index on expression {other}"))),
        };
        let (_, col) = table.column(&name).ok_or_else(|| {
            Error::new(
                SqlState::UndefinedColumn,
                format!("column \"{name}\" does not exist"),
            )
        })?;
        if !rowcodec::keyable(col.ty) {
            return Err(unsupported(format!(
                "column \"{name}\" of type {} cannot be indexed",
                col.ty.name()
            )));
        }
        if out.iter().any(|(id, _)| *id == col.id) {
            return Err(Error::new(
                SqlState::DuplicateColumn,
                format!("column \"{name}\" appears twice in index definition"),
            ));
        }
        let dir = match c.column.options.sort {
            Some(ast::OrderBySort::Desc) => Direction::Desc,
            _ => Direction::Asc,
        };
        out.push((col.id, dir));
    }
    Ok(out)
}

/// Builds a table descriptor from CREATE TABLE. Returns the new table's id, or `None`
/// if it existed already (IF NOT EXISTS).
pub async fn create_table(txn: &mut Txn, db_id: u64, ct: &ast::CreateTable) -> Result<Option<u64>> {
    if ct.query.is_some() || ct.like.is_some() || ct.clone.is_some() {
        return Err(unsupported("CREATE TABLE ... AS / LIKE / CLONE"));
    }
    let (schema, name) = object_name(&ct.name)?;
    if schema.as_deref().is_some_and(|s| s != "public") {
        return Err(Error::new(
            SqlState::InvalidCatalogName,
            format!("schema \"{}\" does not exist", schema.unwrap_or_default()),
        ));
    }
    if catalog::get_table(txn, db_id, &name).await?.is_some() {
        if ct.if_not_exists {
            return Ok(None);
        }
        return Err(Error::new(
            SqlState::DuplicateTable,
            format!("relation \"{name}\" already exists"),
        ));
    }
    let id = catalog::allocate_id(txn).await?;
    let mut table = TableDesc {
        id,
        db_id,
        name: name.clone(),
        columns: Vec::new(),
        primary: IndexDesc {
            id: PRIMARY_INDEX_ID,
            name: format!("{name}_pkey"),
            columns: Vec::new(),
            unique: true,
        },
        indexes: Vec::new(),
        next_column_id: 1,
        next_index_id: PRIMARY_INDEX_ID + 1,
        version: 1,
    };
    let mut primary: Option<Vec<ast::IndexColumn>> = None;
    // Secondary indexes declared with the table: (name, columns, unique).
    let mut uniques: Vec<(Option<String>, Vec<ast::IndexColumn>, bool)> = Vec::new();
    for c in &ct.columns {
        let cname = ident(&c.name);
        if table.column(&cname).is_some() {
            return Err(Error::new(
                SqlState::DuplicateColumn,
                format!("column \"{cname}\" specified more than once"),
            ));
        }
        let mut ty = data_type(&c.data_type)?;
        let serial = matches!(&c.data_type, ast::DataType::Custom(n, _)
            if object_name(n).is_ok_and(|(_, n)| n.contains("serial")));
        let mut default = None;
        if serial {
            // SERIAL is an INT8 filled with unique_rowid(), as in CockroachDB: a
            // sequence would be one hot key in a distributed database.
            ty = DataType::Int8;
            default = Some("unique_rowid()".to_string());
        }
        let mut nullable = !serial;
        let index_col = |name: &ast::Ident| ast::IndexColumn {
            column: ast::OrderByExpr {
                expr: ast::Expr::Identifier(name.clone()),
                options: ast::OrderByOptions {
                    sort: None,
                    nulls_first: None,
                },
                with_fill: None,
            },
            operator_class: None,
        };
        for opt in &c.options {
            match &opt.option {
                ast::ColumnOption::Null => nullable = true,
                ast::ColumnOption::NotNull => nullable = false,
                ast::ColumnOption::Default(e) => {
                    // Check now that the default binds and fits the column.
                    let text = e.to_string();
                    bind_default_check(&text, ty)?;
                    default = Some(text);
                }
                ast::ColumnOption::PrimaryKey(_) => {
                    if primary.is_some() {
                        return Err(multiple_pk(&name));
                    }
                    primary = Some(vec![index_col(&c.name)]);
                    nullable = false;
                }
                ast::ColumnOption::Unique(u) => {
                    uniques.push((u.name.as_ref().map(ident), vec![index_col(&c.name)], true));
                }
                ast::ColumnOption::Check(_) | ast::ColumnOption::ForeignKey(_) => {
                    return Err(unsupported(
                        "CHECK and FOREIGN KEY constraints are not supported",
                    ));
                }
                ast::ColumnOption::Collation(_) | ast::ColumnOption::Comment(_) => {}
                other => return Err(unsupported(format!("column option {other}"))),
            }
        }
        let cid = table.next_column_id;
        table.next_column_id += 1;
        table.columns.push(ColumnDesc {
            id: cid,
            name: cname,
            ty,
            nullable,
            default,
            hidden: false,
        });
    }
    for tc in &ct.constraints {
        match tc {
            ast::TableConstraint::PrimaryKey(pk) => {
                if primary.is_some() {
                    return Err(multiple_pk(&name));
                }
                primary = Some(pk.columns.clone());
            }
            ast::TableConstraint::Unique(u) => {
                uniques.push((u.name.as_ref().map(ident), u.columns.clone(), true));
            }
            ast::TableConstraint::Index(i) => {
                uniques.push((i.name.as_ref().map(ident), i.columns.clone(), false));
            }
            other => return Err(unsupported(format!("constraint {other}"))),
        }
    }
    match primary {
        Some(cols) => {
            table.primary.columns = index_columns(&table, &cols)?;
            for (cid, _) in table.primary.columns.clone() {
                let pos = table.column_position(cid)?;
                table.columns[pos].nullable = false;
            }
        }
        None => {
            // The hidden row id.
            let cid = table.next_column_id;
            table.next_column_id += 1;
            table.columns.push(ColumnDesc {
                id: cid,
                name: ROWID.into(),
                ty: DataType::Int8,
                nullable: false,
                default: Some("unique_rowid()".into()),
                hidden: true,
            });
            table.primary.columns = vec![(cid, Direction::Asc)];
        }
    }
    for (iname, cols, unique) in uniques {
        let columns = index_columns(&table, &cols)?;
        let iname = match iname {
            Some(n) => n,
            _ => {
                let names: Vec<String> = columns
                    .iter()
                    .filter_map(|(c, _)| table.columns.iter().find(|x| x.id == *c))
                    .map(|c| c.name.clone())
                    .collect();
                format!(
                    "{name}_{}_{}",
                    names.join("_"),
                    if unique { "key" } else { "idx" }
                )
            }
        };
        let iid = table.next_index_id;
        table.next_index_id += 1;
        table.indexes.push(IndexDesc {
            id: iid,
            name: iname,
            columns,
            unique,
        });
    }
    catalog::create_table(txn, &table).await?;
    Ok(Some(id))
}

fn multiple_pk(table: &str) -> Error {
    Error::new(
        SqlState::InvalidTableDefinition,
        format!("multiple primary keys for table \"{table}\" are not allowed"),
    )
}

fn bind_default_check(text: &str, ty: DataType) -> Result<()> {
    crate::session::bind_default(text, ty).map(|_| ())
}

/// CREATE INDEX: adds the index and writes an entry for every existing row.
pub async fn create_index(txn: &mut Txn, db_id: u64, ci: &ast::CreateIndex) -> Result<bool> {
    let (_, tname) = object_name(&ci.table_name)?;
    let mut table = catalog::must_get_table(txn, db_id, &tname).await?;
    let columns = index_columns(&table, &ci.columns)?;
    let name = match &ci.name {
        Some(n) => object_name(n)?.1,
        None => {
            let names: Vec<String> = columns
                .iter()
                .filter_map(|(c, _)| table.columns.iter().find(|x| x.id == *c))
                .map(|c| c.name.clone())
                .collect();
            format!(
                "{tname}_{}_{}",
                names.join("_"),
                if ci.unique { "key" } else { "idx" }
            )
        }
    };
    if table.all_indexes().any(|i| i.name == name) {
        if ci.if_not_exists {
            return Ok(false);
        }
        return Err(Error::new(
            SqlState::DuplicateTable,
            format!("relation \"{name}\" already exists"),
        ));
    }
    if ci.predicate.is_some() {
        return Err(unsupported("partial indexes are not supported"));
    }
    let index = IndexDesc {
        id: table.next_index_id,
        name,
        columns,
        unique: ci.unique,
    };
    table.next_index_id += 1;
    // Backfill from the rows, checking uniqueness as we go.
    let prefix = keys::index_prefix(table.id, table.primary.id);
    let rows = txn.scan(&prefix, &keys::prefix_end(&prefix), 0).await?;
    let mut seen = std::collections::HashSet::new();
    let mut reqs = Vec::with_capacity(rows.len());
    for (k, v) in rows {
        let row = rowcodec::decode_row(&table, &k, &v)?;
        if index.unique {
            let vals: Vec<crate::types::Value> = index
                .columns
                .iter()
                .map(|(c, _)| table.column_position(*c).map(|p| row[p].clone()))
                .collect::<Result<_>>()?;
            if !vals.iter().any(|v| v.is_null()) && !seen.insert(vals) {
                return Err(Error::new(
                    SqlState::UniqueViolation,
                    format!("could not create unique index \"{}\"", index.name),
                ));
            }
        }
        reqs.push(cairn_kv::api::Request::Put {
            key: rowcodec::index_key(&table, &index, &row)?,
            value: Vec::new(),
        });
    }
    if !reqs.is_empty() {
        txn.send(reqs).await?;
    }
    table.indexes.push(index);
    catalog::put_table(txn, &mut table).await?;
    Ok(true)
}

/// DROP TABLE / DROP INDEX / DROP DATABASE.
pub async fn drop(
    txn: &mut Txn,
    db_id: u64,
    object_type: &ast::ObjectType,
    names: &[ast::ObjectName],
    if_exists: bool,
) -> Result<&'static str> {
    match object_type {
        ast::ObjectType::Table => {
            for n in names {
                let (_, name) = object_name(n)?;
                match catalog::get_table(txn, db_id, &name).await? {
                    Some(t) => catalog::drop_table(txn, &t).await?,
                    None if if_exists => {}
                    None => {
                        return Err(Error::new(
                            SqlState::UndefinedTable,
                            format!("table \"{name}\" does not exist"),
                        ));
                    }
                }
            }
            Ok("DROP TABLE")
        }
        ast::ObjectType::Index => {
            for n in names {
                let (_, name) = object_name(n)?;
                let mut found = None;
                for t in catalog::list_tables(txn, db_id).await? {
                    if t.indexes.iter().any(|i| i.name == name) {
                        found = Some(t);
                        break;
                    }
                }
                match found {
                    Some(mut t) => {
                        let ix = t
                            .indexes
                            .iter()
                            .position(|i| i.name == name)
                            .ok_or_else(|| crate::error::internal("index vanished"))?;
                        let index = t.indexes.remove(ix);
                        let prefix = keys::index_prefix(t.id, index.id);
                        txn.delete_range(&prefix, &keys::prefix_end(&prefix))
                            .await?;
                        catalog::put_table(txn, &mut t).await?;
                    }
                    None if if_exists => {}
                    None => {
                        return Err(Error::new(
                            SqlState::UndefinedObject,
                            format!("index \"{name}\" does not exist"),
                        ));
                    }
                }
            }
            Ok("DROP INDEX")
        }
        ast::ObjectType::Database => {
            for n in names {
                let (_, name) = object_name(n)?;
                match catalog::get_database(txn, &name).await? {
                    Some(db) => catalog::drop_database(txn, &db).await?,
                    None if if_exists => {}
                    None => {
                        return Err(Error::new(
                            SqlState::InvalidCatalogName,
                            format!("database \"{name}\" does not exist"),
                        ));
                    }
                }
            }
            Ok("DROP DATABASE")
        }
        other => Err(unsupported(format!("DROP {other}"))),
    }
}

/// TRUNCATE: deletes every row and index entry of the tables.
pub async fn truncate(txn: &mut Txn, db_id: u64, t: &ast::Truncate) -> Result<()> {
    for target in &t.table_names {
        let (_, name) = object_name(&target.name)?;
        let table = catalog::must_get_table(txn, db_id, &name).await?;
        let prefix = keys::table_prefix(table.id);
        txn.delete_range(&prefix, &keys::prefix_end(&prefix))
            .await?;
    }
    Ok(())
}

/// ALTER TABLE: ADD COLUMN (rows written before read the default, which is written
/// into them here), DROP COLUMN, RENAME COLUMN, RENAME TO.
pub async fn alter_table(
    txn: &mut Txn,
    db_id: u64,
    name: &ast::ObjectName,
    ops: &[ast::AlterTableOperation],
) -> Result<()> {
    let (_, tname) = object_name(name)?;
    let mut table = catalog::must_get_table(txn, db_id, &tname).await?;
    for op in ops {
        match op {
            ast::AlterTableOperation::AddColumn {
                column_def,
                if_not_exists,
                ..
            } => {
                let cname = ident(&column_def.name);
                if table.column(&cname).is_some() {
                    if *if_not_exists {
                        continue;
                    }
                    return Err(Error::new(
                        SqlState::DuplicateColumn,
                        format!("column \"{cname}\" of relation \"{tname}\" already exists"),
                    ));
                }
                let ty = data_type(&column_def.data_type)?;
                let mut nullable = true;
                let mut default = None;
                for opt in &column_def.options {
                    match &opt.option {
                        ast::ColumnOption::NotNull => nullable = false,
                        ast::ColumnOption::Null => nullable = true,
                        ast::ColumnOption::Default(e) => default = Some(e.to_string()),
                        other => {
                            return Err(unsupported(format!(
                                "column option {other} in ALTER TABLE"
                            )));
                        }
                    }
                }
                let id = table.next_column_id;
                table.next_column_id += 1;
                table.columns.push(ColumnDesc {
                    id,
                    name: cname.clone(),
                    ty,
                    nullable,
                    default: default.clone(),
                    hidden: false,
                });
                // Existing rows get the default (or NULL, refused for NOT NULL).
                let prefix = keys::index_prefix(table.id, table.primary.id);
                let rows = txn.scan(&prefix, &keys::prefix_end(&prefix), 0).await?;
                let value = match &default {
                    Some(text) => {
                        let e = crate::session::bind_default(text, ty)?;
                        let session = crate::expr::SessionInfo::default();
                        let ctx = crate::expr::EvalContext {
                            params: &[],
                            outer: &[],
                            session: &session,
                        };
                        e.eval(&[], &ctx, &Default::default())?.cast(ty)?
                    }
                    None => crate::types::Value::Null,
                };
                if value.is_null() && !nullable && !rows.is_empty() {
                    return Err(Error::new(
                        SqlState::NotNullViolation,
                        format!("column \"{cname}\" of relation \"{tname}\" contains null values"),
                    ));
                }
                if !value.is_null() {
                    let mut reqs = Vec::new();
                    for (k, v) in rows {
                        let mut row = rowcodec::decode_row(&table, &k, &v)?;
                        if let Some(last) = row.last_mut() {
                            *last = value.clone();
                        }
                        reqs.push(cairn_kv::api::Request::Put {
                            key: k,
                            value: rowcodec::encode_row_value(&table, &row),
                        });
                    }
                    if !reqs.is_empty() {
                        txn.send(reqs).await?;
                    }
                }
            }
            ast::AlterTableOperation::RenameColumn {
                old_column_name,
                new_column_name,
            } => {
                let (old, new) = (ident(old_column_name), ident(new_column_name));
                if table.column(&new).is_some() {
                    return Err(Error::new(
                        SqlState::DuplicateColumn,
                        format!("column \"{new}\" of relation \"{tname}\" already exists"),
                    ));
                }
                let (pos, _) = table.column(&old).ok_or_else(|| {
                    Error::new(
                        SqlState::UndefinedColumn,
                        format!("column \"{old}\" does not exist"),
                    )
                })?;
                table.columns[pos].name = new;
            }
            ast::AlterTableOperation::AddConstraint {
                constraint: ast::TableConstraint::PrimaryKey(pk),
                ..
            } => {
                let name = pk.name.as_ref().map(ident);
                add_primary_key(txn, &mut table, name, &pk.columns).await?;
            }
            other => return Err(unsupported(format!("ALTER TABLE {other}"))),
        }
    }
    catalog::put_table(txn, &mut table).await?;
    Ok(())
}

/// Rows the table rewrite of ADD PRIMARY KEY reads and writes at a time.
const REWRITE_BATCH_ROWS: u64 = 2_000;

/// ALTER TABLE ... ADD PRIMARY KEY on a table created without one (keyed by its
/// hidden row id): every row moves to a new primary index keyed by the given columns,
/// which become NOT NULL, and the secondary indexes (whose entries end with the
/// primary key) are rebuilt; the row id column goes away. All of it is writes in the
/// statement's transaction, in batches, so a failure (a duplicate, a NULL) leaves the
/// table as it was.
async fn add_primary_key(
    txn: &mut Txn,
    table: &mut TableDesc,
    name: Option<String>,
    cols: &[ast::IndexColumn],
) -> Result<()> {
    let keyed_by_rowid = match table.primary.columns.as_slice() {
        [(cid, _)] => table
            .columns
            .iter()
            .any(|c| c.id == *cid && c.hidden && c.name == ROWID),
        _ => false,
    };
    if !keyed_by_rowid {
        return Err(multiple_pk(&table.name));
    }
    let old = table.clone();
    let mut new = table.clone();
    new.columns.retain(|c| !(c.hidden && c.name == ROWID));
    new.primary = IndexDesc {
        id: new.next_index_id,
        name: name.unwrap_or_else(|| format!("{}_pkey", table.name)),
        columns: index_columns(&new, cols)?,
        unique: true,
    };
    new.next_index_id += 1;
    for (cid, _) in new.primary.columns.clone() {
        let pos = new.column_position(cid)?;
        new.columns[pos].nullable = false;
    }
    // Positions, in an old row, of the columns the new table keeps.
    let kept: Vec<usize> = new
        .columns
        .iter()
        .map(|c| old.column_position(c.id))
        .collect::<Result<_>>()?;
    // Old secondary entries first: the rebuilt ones reuse their index ids.
    for ix in &old.indexes {
        let prefix = keys::index_prefix(old.id, ix.id);
        txn.delete_range(&prefix, &keys::prefix_end(&prefix))
            .await?;
    }
    let prefix = keys::index_prefix(old.id, old.primary.id);
    let end = keys::prefix_end(&prefix);
    let mut start = prefix.clone();
    loop {
        let rows = txn.scan(&start, &end, REWRITE_BATCH_ROWS).await?;
        let Some((last, _)) = rows.last() else { break };
        start = keys::next_key(last);
        let full = rows.len() as u64 == REWRITE_BATCH_ROWS;
        let mut reqs = Vec::with_capacity(rows.len() * (1 + new.indexes.len()));
        for (k, v) in &rows {
            let row = rowcodec::decode_row(&old, k, v)?;
            let row: Vec<crate::types::Value> = kept.iter().map(|&p| row[p].clone()).collect();
            for (cid, _) in &new.primary.columns {
                let pos = new.column_position(*cid)?;
                if row[pos].is_null() {
                    return Err(Error::new(
                        SqlState::NotNullViolation,
                        format!(
                            "column \"{}\" of relation \"{}\" contains null values",
                            new.columns[pos].name, new.name
                        ),
                    ));
                }
            }
            reqs.push(cairn_kv::api::Request::ConditionalPut {
                key: rowcodec::primary_key(&new, &row)?,
                value: rowcodec::encode_row_value(&new, &row),
                expected: None,
            });
            for ix in &new.indexes {
                reqs.push(cairn_kv::api::Request::Put {
                    key: rowcodec::index_key(&new, ix, &row)?,
                    value: Vec::new(),
                });
            }
        }
        match txn.send(reqs).await {
            Err(cairn_txn::TxnError::Kv(cairn_kv::api::Error::Kv(
                cairn_kv::Error::ConditionFailed { .. },
            ))) => {
                return Err(Error::new(
                    SqlState::UniqueViolation,
                    format!("could not create unique index \"{}\"", new.primary.name),
                ));
            }
            other => {
                other?;
            }
        }
        if !full {
            break;
        }
    }
    txn.delete_range(&prefix, &end).await?;
    *table = new;
    Ok(())
}
