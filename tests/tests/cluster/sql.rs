//! SQL over the wire against a 3-node cluster: the shared sqllogictest corpus, the
//! extended protocol in binary with tokio-postgres, psql, the protocol's states, and
//! bad input.

use std::time::Duration;

use cairn_tests::{Cluster, Rng};
use sqllogictest::{DBOutput, DefaultColumnType, Runner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::{NoTls, SimpleQueryMessage};

/// Waits until node `i` serves SQL and returns its address.
async fn sql_addr(c: &Cluster, i: usize) -> String {
    c.wait_until(Duration::from_secs(30), "SQL serves", |c| {
        c.node(i).sql_server().is_some()
    })
    .await;
    c.node(i).sql_addr().to_string()
}

async fn connect(addr: &str, db: &str) -> tokio_postgres::Client {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let conn_str = format!("host={host} port={port} user=root dbname={db} connect_timeout=10");
    let (client, conn) = tokio_postgres::connect(&conn_str, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// tokio-postgres's simple query protocol as a sqllogictest database: values come
/// back as Postgres prints them.
struct Wire(tokio_postgres::Client);

#[derive(Debug)]
struct WireError(tokio_postgres::Error);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => write!(f, "{}: {}", db.code().code(), db.message()),
            None => write!(f, "{}", self.0),
        }
    }
}

impl std::error::Error for WireError {}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Wire {
    type Error = WireError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, WireError> {
        let messages = self.0.simple_query(sql).await.map_err(WireError)?;
        let mut rows = Vec::new();
        for m in messages {
            match m {
                SimpleQueryMessage::Row(r) => rows.push(
                    (0..r.len())
                        .map(|i| match r.get(i) {
                            None => "NULL".to_string(),
                            Some("") => "(empty)".to_string(),
                            Some(v) => v.to_string(),
                        })
                        .collect::<Vec<_>>(),
                ),
                SimpleQueryMessage::CommandComplete(_) if !rows.is_empty() => break,
                _ => {}
            }
        }
        if rows.is_empty() {
            Ok(DBOutput::StatementComplete(0))
        } else {
            let width = rows[0].len();
            Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Any; width],
                rows,
            })
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "postgres"
    }

    fn error_sql_state(err: &WireError) -> Option<String> {
        err.0.code().map(|c| c.code().to_string())
    }
}

/// The five files of the shared corpus, each in its own database, through node 1..3
/// in turn. Every record must pass, as it does on PostgreSQL 15.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqllogictest_corpus_passes_over_the_wire() {
    let c = Cluster::start(3).await;
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("slt");
    let files = [
        "select1.slt",
        "select2.slt",
        "select3.slt",
        "random__aggregates__slt_good_0.slt",
        "random__groupby__slt_good_0.slt",
    ];
    let mut report = Vec::new();
    let mut total = 0;
    for (n, name) in files.iter().enumerate() {
        let addr = sql_addr(&c, n % 3 + 1).await;
        let db = format!("slt{n}");
        connect(&addr, "defaultdb")
            .await
            .simple_query(&format!("CREATE DATABASE {db}"))
            .await
            .expect("create database");
        let mut runner = Runner::new(move || {
            let addr = addr.clone();
            let db = db.clone();
            async move { Ok(Wire(connect(&addr, &db).await)) }
        });
        let t = cairn_sql::slt::run_file(&mut runner, &dir.join(name), 5)
            .await
            .expect("file parses");
        println!(
            "{name}: passed {} failed {} skipped {}",
            t.passed, t.failed, t.skipped
        );
        total += t.passed;
        if t.failed > 0 {
            report.push(format!(
                "{name}: {} failed; first: {:?}",
                t.failed, t.failures
            ));
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
    assert!(total > 20_000, "only {total} records ran");
}

/// The extended protocol with binary values: tokio-postgres prepares statements
/// (Parse/Describe), binds parameters in binary and reads binary results.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokio_postgres_extended_protocol_binary_values() {
    let c = Cluster::start(3).await;
    let addr = sql_addr(&c, 2).await;
    let client = connect(&addr, "defaultdb").await;
    client
        .batch_execute(
            "CREATE TABLE things (
                id INT8 PRIMARY KEY, small INT2, mid INT4, name TEXT, price NUMERIC,
                ratio FLOAT8, ok BOOL, born DATE, at TIMESTAMP, atz TIMESTAMPTZ,
                tag UUID, blob BYTEA, code VARCHAR(4))",
        )
        .await
        .unwrap();
    let insert = client
        .prepare(
            "INSERT INTO things VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .await
        .unwrap();
    // The server inferred every parameter's type from the columns.
    let types: Vec<String> = insert
        .params()
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    assert_eq!(
        types,
        [
            "int8",
            "int2",
            "int4",
            "text",
            "numeric",
            "float8",
            "bool",
            "date",
            "timestamp",
            "timestamptz",
            "uuid",
            "bytea",
            "varchar"
        ]
    );
    let price = rust_decimal::Decimal::new(12345, 2);
    let born = chrono::NaiveDate::from_ymd_opt(1999, 12, 31).unwrap();
    let at = born.and_hms_micro_opt(23, 59, 58, 123_456).unwrap();
    let atz = at.and_utc();
    let tag = uuid::Uuid::from_bytes([7; 16]);
    for id in 1..=3i64 {
        let n = client
            .execute(
                &insert,
                &[
                    &id,
                    &(id as i16),
                    &(id as i32 * 1000),
                    &format!("n{id}"),
                    &price,
                    &0.5f64,
                    &(id % 2 == 0),
                    &born,
                    &at,
                    &atz,
                    &tag,
                    &vec![0u8, 1, 255],
                    &"abcd",
                ],
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    let row = client
        .query_one("SELECT * FROM things WHERE id = $1", &[&2i64])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>("id"), 2);
    assert_eq!(row.get::<_, i16>("small"), 2);
    assert_eq!(row.get::<_, i32>("mid"), 2000);
    assert_eq!(row.get::<_, String>("name"), "n2");
    assert_eq!(row.get::<_, rust_decimal::Decimal>("price"), price);
    assert_eq!(row.get::<_, f64>("ratio"), 0.5);
    assert!(row.get::<_, bool>("ok"));
    assert_eq!(row.get::<_, chrono::NaiveDate>("born"), born);
    assert_eq!(row.get::<_, chrono::NaiveDateTime>("at"), at);
    assert_eq!(row.get::<_, chrono::DateTime<chrono::Utc>>("atz"), atz);
    assert_eq!(row.get::<_, uuid::Uuid>("tag"), tag);
    assert_eq!(row.get::<_, Vec<u8>>("blob"), vec![0u8, 1, 255]);
    assert_eq!(row.get::<_, String>("code"), "abcd");

    // A range predicate with parameters, and aggregates read in binary.
    let row = client
        .query_one(
            "SELECT count(*), sum(mid), max(name) FROM things WHERE id BETWEEN $1 AND $2",
            &[&1i64, &2i64],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
    assert_eq!(row.get::<_, i64>(1), 3000);
    assert_eq!(row.get::<_, String>(2), "n2");

    // An explicit transaction through the driver.
    let mut client = client;
    let txn = client.transaction().await.unwrap();
    txn.execute("UPDATE things SET mid = mid + 1 WHERE id = $1", &[&1i64])
        .await
        .unwrap();
    txn.execute("DELETE FROM things WHERE id = $1", &[&3i64])
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let rows = client
        .query("SELECT id, mid FROM things ORDER BY id", &[])
        .await
        .unwrap();
    let got: Vec<(i64, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(1, 1001), (2, 2000)]);

    // Errors carry their SQLSTATE; the connection goes on.
    let e = client
        .execute(
            &insert,
            &[
                &1i64,
                &1i16,
                &1i32,
                &"dup",
                &price,
                &0.5f64,
                &true,
                &born,
                &at,
                &atz,
                &tag,
                &vec![0u8],
                &"x",
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("23505"), "{e}");
    let e = client
        .query("SELECT * FROM nowhere", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42P01"), "{e}");
    let e = client.query("SELECT 1 +", &[]).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42601"), "{e}");
    let row = client
        .query_one("SELECT $1::TEXT || 'x'", &[&"a"])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "ax");
}

/// A raw connection speaking protocol 3.0 by hand, to check what drivers hide.
struct Raw {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects and reads the startup answer; returns the ParameterStatus names.
    async fn connect(addr: &str) -> (Raw, Vec<String>) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut body = Vec::new();
        body.extend_from_slice(&196608i32.to_be_bytes());
        for (k, v) in [("user", "root"), ("database", "defaultdb")] {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut msg = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        msg.extend_from_slice(&body);
        stream.write_all(&msg).await.unwrap();
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
        };
        let (_, params, status) = raw.until_ready().await;
        assert_eq!(status, b'I');
        (raw, params)
    }

    /// Reads one backend message: its type and body.
    async fn message(&mut self) -> (u8, Vec<u8>) {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                if self.buf.len() > len {
                    let body = self.buf[5..1 + len].to_vec();
                    let t = self.buf[0];
                    self.buf.drain(..1 + len);
                    return (t, body);
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
                .await
                .expect("server answers")
                .unwrap();
            assert!(n > 0, "server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Messages up to ReadyForQuery: (types seen, ParameterStatus names, status).
    async fn until_ready(&mut self) -> (Vec<u8>, Vec<String>, u8) {
        let mut types = Vec::new();
        let mut params = Vec::new();
        loop {
            let (t, body) = self.message().await;
            if t == b'S' {
                let name = body.split(|b| *b == 0).next().unwrap_or_default();
                params.push(String::from_utf8_lossy(name).to_string());
            }
            if t == b'Z' {
                return (types, params, body[0]);
            }
            types.push(t);
        }
    }

    async fn send(&mut self, t: u8, body: &[u8]) {
        let mut msg = vec![t];
        msg.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        msg.extend_from_slice(body);
        self.stream.write_all(&msg).await.unwrap();
    }

    /// Runs a simple query; returns the message types and the final status.
    async fn query(&mut self, sql: &str) -> (Vec<u8>, u8) {
        let mut body = sql.as_bytes().to_vec();
        body.push(0);
        self.send(b'Q', &body).await;
        let (types, _, status) = self.until_ready().await;
        (types, status)
    }
}

/// ReadyForQuery reports the session's own transaction state: idle, in a block,
/// failed (only ROLLBACK accepted), and back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ready_for_query_mirrors_the_transaction_state() {
    let c = Cluster::start(3).await;
    let addr = sql_addr(&c, 1).await;
    // The startup sends the ParameterStatus messages drivers read.
    let (mut raw, params) = Raw::connect(&addr).await;
    for p in [
        "server_version",
        "client_encoding",
        "DateStyle",
        "TimeZone",
        "integer_datetimes",
        "standard_conforming_strings",
    ] {
        assert!(
            params.iter().any(|n| n == p),
            "missing ParameterStatus {p}: {params:?}"
        );
    }

    raw.query("CREATE TABLE rfq (k INT PRIMARY KEY)").await;
    assert_eq!(raw.query("BEGIN").await.1, b'T');
    assert_eq!(raw.query("INSERT INTO rfq VALUES (1)").await.1, b'T');
    let (types, status) = raw.query("SELECT 1/0").await;
    assert!(types.contains(&b'E'));
    assert_eq!(status, b'E');
    let (types, status) = raw.query("SELECT 1").await;
    assert!(types.contains(&b'E'), "a failed block refuses statements");
    assert_eq!(status, b'E');
    assert_eq!(raw.query("ROLLBACK").await.1, b'I');
    assert_eq!(raw.query("SELECT count(*) FROM rfq").await.1, b'I');
    // A syntax error inside a block fails it too.
    assert_eq!(raw.query("BEGIN").await.1, b'T');
    assert_eq!(raw.query("SELEC 1").await.1, b'E');
    assert_eq!(raw.query("COMMIT").await.1, b'I');
    // Savepoints bring a failed block back.
    raw.query("BEGIN; SAVEPOINT a").await;
    assert_eq!(raw.query("SELECT 1/0").await.1, b'E');
    assert_eq!(raw.query("ROLLBACK TO SAVEPOINT a").await.1, b'T');
    assert_eq!(raw.query("COMMIT").await.1, b'I');
    // A query string of several statements is one transaction: an error undoes the
    // statements before it.
    let (types, status) = raw.query("INSERT INTO rfq VALUES (5); SELECT 1/0").await;
    assert!(types.contains(&b'E'));
    assert_eq!(status, b'I');
    let (types, _) = raw.query("SELECT k FROM rfq WHERE k = 5").await;
    assert!(
        !types.contains(&b'D'),
        "the insert was rolled back: {types:?}"
    );
    // An empty query.
    let (types, status) = raw.query("").await;
    assert_eq!((types, status), (vec![b'I'], b'I'));
}

/// Garbage on the SQL port and garbage SQL: each offending client gets an error (or
/// loses its own connection); the server and a well-behaved client carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_only_hurts_the_client_that_sent_it() {
    let c = Cluster::start(3).await;
    let addr = sql_addr(&c, 1).await;
    let good = connect(&addr, "defaultdb").await;
    good.batch_execute("CREATE TABLE steady (k INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    let mut rng = Rng::new(7);
    for round in 0..40u64 {
        // Random bytes, before and after a valid startup.
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let len = 1 + rng.below(300) as usize;
        let junk: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
        if round % 2 == 1 {
            let (mut raw, _) = Raw::connect(&addr).await;
            raw.stream.write_all(&junk).await.unwrap();
            let _ =
                tokio::time::timeout(Duration::from_millis(200), raw.stream.read(&mut [0u8; 64]))
                    .await;
        } else {
            let _ = stream.write_all(&junk).await;
            let _ =
                tokio::time::timeout(Duration::from_millis(200), stream.read(&mut [0u8; 64])).await;
        }
        // Random statement text: an error, never a dropped connection.
        let words = [
            "SELECT", "FROM", "(", ")", "'", "1", "steady", ",", "WHERE", "=", "NULL", "*", "JOIN",
            "ON", "GROUP BY", "::", "INSERT", "VALUES", "$1", ";", "CASE", "\u{0}", "é", "--",
        ];
        let sql: Vec<&str> = (0..1 + rng.below(12))
            .map(|_| words[rng.below(words.len() as u64) as usize])
            .collect();
        let sql = sql.join(" ");
        let _ = good.simple_query(&sql).await;
        good.execute(
            "INSERT INTO steady VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = steady.v + 1",
            &[&(round as i32), &1i32],
        )
        .await
        .unwrap_or_else(|e| panic!("the good client failed after {sql:?}: {e}"));
    }
    let row = good
        .query_one("SELECT count(*) FROM steady", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 40);
    // A new client connects fine.
    let late = connect(&addr, "defaultdb").await;
    late.simple_query("SELECT 1").await.unwrap();
}

/// psql, the program users reach for: \dt and \d list what CREATE TABLE made.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psql_lists_and_describes_tables() {
    let c = Cluster::start(3).await;
    let addr = sql_addr(&c, 3).await;
    let client = connect(&addr, "defaultdb").await;
    client
        .batch_execute(
            "CREATE TABLE accounts (id INT PRIMARY KEY, owner TEXT NOT NULL, balance NUMERIC DEFAULT 0);
             CREATE INDEX accounts_owner ON accounts (owner)",
        )
        .await
        .unwrap();
    let (host, port) = addr.rsplit_once(':').unwrap();
    let url = format!("postgresql://root@{host}:{port}/defaultdb?sslmode=disable");
    let copy_url = url.clone();
    let psql = move |cmd: &str| {
        let out = std::process::Command::new("psql")
            .args([url.as_str(), "-X", "-c", cmd])
            .output()
            .expect("psql is installed (.ci/run installs postgresql-client)");
        assert!(
            out.status.success(),
            "psql {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let dt = tokio::task::spawn_blocking({
        let psql = psql.clone();
        move || psql("\\dt")
    })
    .await
    .unwrap();
    assert!(dt.contains("accounts") && dt.contains("table"), "{dt}");
    let l = tokio::task::spawn_blocking({
        let psql = psql.clone();
        move || psql("\\l")
    })
    .await
    .unwrap();
    assert!(l.contains("defaultdb") && l.contains("postgres"), "{l}");
    // COPY FROM STDIN through psql, in CSV and in the text format.
    let copy = {
        let url = copy_url;
        move |cmd: &str, data: &str| {
            use std::io::Write;
            let mut child = std::process::Command::new("psql")
                .args([url.as_str(), "-X", "-v", "ON_ERROR_STOP=1", "-c", cmd])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("psql");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(data.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{cmd}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).to_string()
        }
    };
    let out = tokio::task::spawn_blocking({
        let copy = copy.clone();
        move || {
            copy(
                "COPY accounts (id, owner, balance) FROM STDIN WITH (FORMAT csv)",
                "1,\"Ann, the first\",10.5\n2,bob,\n",
            )
        }
    })
    .await
    .unwrap();
    assert!(out.contains("COPY 2"), "{out}");
    let out = tokio::task::spawn_blocking(move || {
        copy("COPY accounts FROM STDIN", "3\tcy\t\\N\n4\td\\te\t7\n\\.\n")
    })
    .await
    .unwrap();
    assert!(out.contains("COPY 2"), "{out}");
    let rows = client
        .query(
            "SELECT id, owner, balance::TEXT FROM accounts ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(i32, String, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "Ann, the first".to_string(), Some("10.5".to_string())),
            (2, "bob".to_string(), None),
            (3, "cy".to_string(), None),
            (4, "d\te".to_string(), Some("7".to_string())),
        ]
    );
    let d = tokio::task::spawn_blocking(move || psql("\\d accounts"))
        .await
        .unwrap();
    for want in [
        "id",
        "integer",
        "owner",
        "text",
        "not null",
        "balance",
        "numeric",
        "accounts_pkey",
        "accounts_owner",
    ] {
        assert!(d.contains(want), "\\d accounts lacks {want}:\n{d}");
    }
}

/// psycopg 3, psycopg2 and asyncpg (in a virtual environment made by
/// `tests/drivers/setup.sh`) run DDL, parameterised DML and transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_drivers_work() {
    let c = Cluster::start(3).await;
    let addr = sql_addr(&c, 2).await;
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("drivers");
    let setup_sh = dir.join("setup.sh");
    let setup = tokio::task::spawn_blocking(move || std::process::Command::new(setup_sh).output())
        .await
        .unwrap()
        .expect("run setup.sh");
    assert!(
        setup.status.success(),
        "setup.sh: {}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let python = String::from_utf8_lossy(&setup.stdout).trim().to_string();
    let (host, port) = addr.rsplit_once(':').unwrap();
    let script = dir.join("drivers.py");
    let args = [host.to_string(), port.to_string()];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&python)
            .arg(script)
            .args(args)
            .output()
    })
    .await
    .unwrap()
    .expect("run drivers.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "drivers.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for driver in ["psycopg3 ok", "psycopg2 ok", "asyncpg ok"] {
        assert!(stdout.contains(driver), "{stdout}");
    }
}

/// Without --insecure, clients authenticate with SCRAM-SHA-256: root with the
/// password the node was given, users with the passwords CREATE USER stored; wrong
/// passwords and unknown users get 28P01.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passwords_are_checked_with_scram() {
    let c = Cluster::start_configured(3, |config| {
        config.insecure = false;
        config.root_password = Some("rootpw".into());
    })
    .await;
    let addr = sql_addr(&c, 1).await;
    let (host, port) = addr.rsplit_once(':').unwrap();
    let login = |user: &str, password: &str| {
        format!(
            "host={host} port={port} user={user} password={password} dbname=defaultdb connect_timeout=10"
        )
    };
    let try_login = |conn_str: String| async move {
        match tokio_postgres::connect(&conn_str, NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(client)
            }
            Err(e) => Err(e),
        }
    };
    // The root password reaches the catalog when the node bootstraps SQL.
    let mut root = None;
    for _ in 0..50 {
        if let Ok(client) = try_login(login("root", "rootpw")).await {
            root = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let root = root.expect("root logs in with its password");
    root.batch_execute("CREATE USER alice WITH PASSWORD 'wonderland'")
        .await
        .unwrap();
    let alice = try_login(login("alice", "wonderland"))
        .await
        .expect("alice logs in");
    alice.simple_query("SELECT 1").await.unwrap();
    for (user, password) in [("alice", "wrong"), ("root", "wrong"), ("nobody", "x")] {
        let e = try_login(login(user, password))
            .await
            .err()
            .unwrap_or_else(|| panic!("{user} logged in with {password}"));
        assert_eq!(e.code().map(|c| c.code()), Some("28P01"), "{user}: {e}");
    }
    // A new password replaces the old one.
    root.batch_execute("ALTER USER alice WITH PASSWORD 'looking-glass'")
        .await
        .unwrap();
    assert!(try_login(login("alice", "wonderland")).await.is_err());
    try_login(login("alice", "looking-glass"))
        .await
        .expect("the new password works");
}

/// ALTER TABLE ... SPLIT AT splits a table's ranges at primary key values (again at
/// the same value: nothing to do); SHOW RANGES FROM TABLE lists the ranges with
/// replicas and leaseholders, and EXPLAIN shows a plan's key spans and the ranges it
/// reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn show_ranges_and_explain_name_the_ranges() {
    let c = Cluster::start(3).await;
    let addr = sql_addr(&c, 1).await;
    let client = connect(&addr, "defaultdb").await;
    client
        .batch_execute("CREATE TABLE kv (k INT PRIMARY KEY, v TEXT); INSERT INTO kv VALUES (1, 'a'), (50, 'b')")
        .await
        .unwrap();
    let table_id: i64 = client
        .query_one("SELECT oid::INT8 FROM pg_class WHERE relname = 'kv'", &[])
        .await
        .unwrap()
        .get(0);
    // Split the table's primary index at k = 10.
    let split = client
        .query_one("ALTER TABLE kv SPLIT AT VALUES (10)", &[])
        .await
        .unwrap();
    assert_eq!(
        split.get::<_, String>("key"),
        format!("/Table/{table_id}/1/10")
    );
    let new_range: Option<i64> = split.get("range_id");
    assert!(new_range.is_some(), "a new range");
    let again = client
        .query_one("ALTER TABLE kv SPLIT AT VALUES (10)", &[])
        .await
        .unwrap();
    assert_eq!(again.get::<_, Option<i64>>("range_id"), None);
    let e = client
        .query("ALTER TABLE kv SPLIT AT VALUES (1, 2)", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42601"), "{e}");
    let rows = client
        .query("SHOW RANGES FROM TABLE kv", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "two ranges after the split");
    assert_eq!(rows[1].get::<_, i64>("range_id"), new_range.unwrap());
    let names: Vec<&str> = rows[0].columns().iter().map(|c| c.name()).collect();
    assert_eq!(
        names,
        [
            "range_id",
            "start_key",
            "end_key",
            "replicas",
            "lease_holder",
            "range_size_bytes",
            "qps"
        ]
    );
    let first_end: String = rows[0].get("end_key");
    let second_start: String = rows[1].get("start_key");
    assert_eq!(first_end, format!("/Table/{table_id}/1/10"));
    assert_eq!(second_start, first_end);
    for r in &rows {
        assert_eq!(r.get::<_, String>("replicas"), "{1,2,3}");
        let holder: Option<i64> = r.get("lease_holder");
        assert!(
            holder.is_some_and(|h| (1..=3).contains(&h)),
            "a leaseholder"
        );
    }
    // EXPLAIN: a point lookup's span, and the ranges of the scanned index.
    let plan: Vec<String> = client
        .query("EXPLAIN SELECT v FROM kv WHERE k = 50", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let text = plan.join("\n");
    assert!(text.contains(&format!("/Table/{table_id}/1/50")), "{text}");
    assert!(text.contains("ranges of kv@kv_pkey: r"), "{text}");
    assert!(text.contains("leaseholder n"), "{text}");
    // The data is intact across the split.
    let row = client
        .query_one("SELECT v FROM kv WHERE k = 50", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "b");
}

/// A CancelRequest on another connection stops a running statement with 57014; the
/// session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_request_stops_a_running_statement() {
    let c = Cluster::start(3).await;
    let addr = sql_addr(&c, 1).await;
    let client = connect(&addr, "defaultdb").await;
    client
        .batch_execute("CREATE TABLE big (k INT PRIMARY KEY)")
        .await
        .unwrap();
    let values: Vec<String> = (0..3000).map(|i| format!("({i})")).collect();
    client
        .batch_execute(&format!("INSERT INTO big VALUES {}", values.join(",")))
        .await
        .unwrap();
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(NoTls).await
    });
    // One scan per row: thousands of round trips, long enough to be cancelled.
    let started = std::time::Instant::now();
    let e = client
        .query(
            "SELECT count(*) FROM big a WHERE (SELECT count(*) FROM big b WHERE b.k < a.k) >= 0",
            &[],
        )
        .await
        .expect_err("the statement is cancelled");
    canceller.await.unwrap().expect("cancel request sent");
    assert_eq!(e.code().map(|c| c.code()), Some("57014"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let row = client
        .query_one("SELECT count(*) FROM big", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 3000);
}

/// Connections beyond the node's limit are refused with 53300; closing one makes room.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connection_limit_refuses_the_extra_client() {
    let c = Cluster::start_configured(3, |config| config.max_sql_connections = 3).await;
    let addr = sql_addr(&c, 1).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(connect(&addr, "defaultdb").await);
    }
    let (host, port) = addr.rsplit_once(':').unwrap();
    let conn_str = format!("host={host} port={port} user=root dbname=defaultdb");
    let e = tokio_postgres::connect(&conn_str, NoTls)
        .await
        .err()
        .expect("the fourth connection is refused");
    assert_eq!(e.code().map(|c| c.code()), Some("53300"), "{e}");
    drop(open.pop());
    let mut ok = false;
    for _ in 0..50 {
        if let Ok((client, conn)) = tokio_postgres::connect(&conn_str, NoTls).await {
            tokio::spawn(conn);
            client.simple_query("SELECT 1").await.unwrap();
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "a slot frees when a client leaves");
}
