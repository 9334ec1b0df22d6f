//! The HTTP + SQLite baseline: a minimal hyper server that runs the same SQL
//! in-process with rusqlite, behind the same routes and JSON shapes as the
//! gateway's data plane. Driven by the same load generator, it is the limit of
//! "HTTP + JSON + SQLite" on this machine, which the gateway's extra hop
//! (docker exec into a container) is measured against.
//!
//! Concurrency design, chosen to make this baseline as fast as a simple
//! server can be, so that the ratio against it is honest:
//! - read-only statements (`sqlite3_stmt_readonly`) run inline on the Tokio
//!   worker thread that parsed the request, on a pooled reader connection
//!   (at most one per worker thread is ever in use). A point read costs a few
//!   microseconds; a hand-off to another thread would cost more than the read.
//! - everything else runs on Tokio's blocking pool, on the database's one
//!   writer connection (SQLite has one writer at a time anyway), because a
//!   commit at `synchronous=FULL` waits for `fsync` and must not stall the
//!   runtime.
//! - WAL journal, `synchronous` as asked at spawn time (default FULL, SQLite's
//!   own default), a 5 s busy timeout, prepared statements cached.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, Statement};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// Largest request body accepted (a 100-row insert is ~5 KB).
const MAX_BODY: usize = 16 << 20;
/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Longest database name accepted.
const MAX_NAME: usize = 64;

/// The server's state: its databases by name.
pub struct Baseline {
    /// Where database files live (`NAME.sqlite3`).
    data_dir: PathBuf,
    /// Open databases.
    dbs: RwLock<HashMap<String, Arc<Db>>>,
}

/// One open database.
struct Db {
    /// Its file.
    path: PathBuf,
    /// Idle reader connections; one is taken per read and put back after.
    readers: Mutex<Vec<Connection>>,
    /// The one connection that writes.
    writer: Mutex<Connection>,
}

/// An error with its HTTP status and `detail` message.
#[derive(Debug)]
struct Failure(StatusCode, String);

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure(StatusCode::BAD_REQUEST, format!("SQL Error: {e}"))
    }
}

/// Body of `POST /api/db/{name}/query`.
#[derive(Deserialize)]
struct QueryBody {
    sql: String,
    #[serde(default)]
    params: Option<Vec<Value>>,
}

/// Body of `POST /admin/databases/spawn/{name}` (optional).
#[derive(Deserialize, Default)]
struct SpawnBody {
    #[serde(default)]
    synchronous: Option<String>,
}

/// One column of `POST /api/db/{name}/tables`.
#[derive(Deserialize)]
struct ColumnDef {
    name: String,
    #[serde(rename = "type", default)]
    ty: Option<String>,
    #[serde(default)]
    primary_key: bool,
    #[serde(default)]
    not_null: bool,
}

/// Body of `POST /api/db/{name}/tables`.
#[derive(Deserialize)]
struct TableBody {
    table_name: String,
    columns: Vec<ColumnDef>,
}

/// Body of `POST /api/db/{name}/tables/{t}/rows`.
#[derive(Deserialize)]
struct RowsBody {
    rows: Vec<serde_json::Map<String, Value>>,
}

impl Baseline {
    /// A server keeping its files in `data_dir` (created if missing).
    pub fn new(data_dir: &Path) -> std::io::Result<Arc<Baseline>> {
        std::fs::create_dir_all(data_dir)?;
        Ok(Arc::new(Baseline {
            data_dir: data_dir.to_path_buf(),
            dbs: RwLock::new(HashMap::new()),
        }))
    }

    /// Serves HTTP/1.1 on `listener` until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            let (stream, _) = tokio::select! {
                _ = &mut shutdown => return,
                accepted = listener.accept() => match accepted {
                    Ok(x) => x,
                    Err(_) => continue,
                },
            };
            let _ = stream.set_nodelay(true);
            let me = self.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let me = me.clone();
                    async move { Ok::<_, Infallible>(me.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    }

    /// Routes one request.
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("body: {e}")),
        };
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let result = match (&method, segs.as_slice()) {
            (&Method::GET, [""]) => Ok(reply(
                StatusCode::OK,
                json!({"message": "DB-Forge baseline server (in-process rusqlite)."}),
            )),
            (&Method::GET, ["health"]) => Ok(reply(StatusCode::OK, json!({"status": "ok"}))),
            (&Method::POST, ["admin", "databases", "spawn", name]) => self.spawn(name, &body),
            (&Method::DELETE, ["admin", "databases", name]) => self.delete(name),
            (&Method::GET, ["admin", "databases"]) => Ok(self.list()),
            (&Method::POST, ["api", "db", name, "query"]) => match self.db(name) {
                Ok(db) => query(db, &body).await,
                Err(e) => Err(e),
            },
            (&Method::POST, ["api", "db", name, "tables"]) => match self.db(name) {
                Ok(db) => create_table(db, &body).await,
                Err(e) => Err(e),
            },
            (&Method::POST, ["api", "db", name, "tables", table, "rows"]) => match self.db(name) {
                Ok(db) => insert_rows(db, table, &body).await,
                Err(e) => Err(e),
            },
            _ => Err(Failure(StatusCode::NOT_FOUND, "Not found.".into())),
        };
        result.unwrap_or_else(|Failure(status, msg)| error(status, &msg))
    }

    fn db(&self, name: &str) -> Result<Arc<Db>, Failure> {
        self.dbs
            .read()
            .expect("lock")
            .get(name)
            .cloned()
            .ok_or_else(|| Failure(StatusCode::NOT_FOUND, "Database not found.".into()))
    }

    fn spawn(&self, name: &str, body: &[u8]) -> Result<Response<Full<Bytes>>, Failure> {
        if !valid_name(name) {
            return Err(Failure(
                StatusCode::BAD_REQUEST,
                "Invalid database name.".into(),
            ));
        }
        let opts: SpawnBody = if body.is_empty() {
            SpawnBody::default()
        } else {
            serde_json::from_slice(body)
                .map_err(|e| Failure(StatusCode::BAD_REQUEST, e.to_string()))?
        };
        let synchronous = match opts.synchronous.as_deref().unwrap_or("full") {
            s @ ("full" | "normal" | "off") => s.to_uppercase(),
            other => {
                return Err(Failure(
                    StatusCode::BAD_REQUEST,
                    format!("synchronous must be full or normal, not {other}"),
                ))
            }
        };
        let mut dbs = self.dbs.write().expect("lock");
        let answer = |status, message: &str| {
            reply(
                status,
                json!({"message": message, "db_name": name, "container_id": format!("inproc-{name}")}),
            )
        };
        if dbs.contains_key(name) {
            return Ok(answer(
                StatusCode::OK,
                "Database instance already exists and is running.",
            ));
        }
        let path = self.data_dir.join(format!("{name}.sqlite3"));
        let writer = open(&path).map_err(internal)?;
        writer
            .execute_batch(&format!(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous={synchronous};"
            ))
            .map_err(internal)?;
        dbs.insert(
            name.to_string(),
            Arc::new(Db {
                path,
                readers: Mutex::new(Vec::new()),
                writer: Mutex::new(writer),
            }),
        );
        Ok(answer(
            StatusCode::CREATED,
            "Database instance spawned successfully.",
        ))
    }

    fn delete(&self, name: &str) -> Result<Response<Full<Bytes>>, Failure> {
        let db = self
            .dbs
            .write()
            .expect("lock")
            .remove(name)
            .ok_or_else(|| Failure(StatusCode::NOT_FOUND, "Database not found.".into()))?;
        let path = db.path.clone();
        drop(db);
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
        Ok(reply(
            StatusCode::OK,
            json!({"message": "Database deleted.", "db_name": name}),
        ))
    }

    fn list(&self) -> Response<Full<Bytes>> {
        let dbs = self.dbs.read().expect("lock");
        let mut names: Vec<&String> = dbs.keys().collect();
        names.sort();
        let list: Vec<Value> = names
            .into_iter()
            .map(|n| json!({"name": n, "container_id": format!("inproc-{n}"), "status": "running"}))
            .collect();
        reply(StatusCode::OK, Value::Array(list))
    }
}

impl Db {
    /// Runs `sql` if it only reads, on a reader connection; `None` if it writes.
    fn try_read(&self, sql: &str, params: &[Value]) -> Option<Result<Vec<u8>, Failure>> {
        let pooled = self.readers.lock().expect("lock").pop();
        let conn = match pooled {
            Some(c) => c,
            None => match open(&self.path) {
                Ok(c) => c,
                Err(e) => return Some(Err(internal(e))),
            },
        };
        let result = match conn.prepare_cached(sql) {
            Ok(mut stmt) if stmt.readonly() => Some(run(&mut stmt, params).map_err(Failure::from)),
            Ok(_) => None,
            Err(e) => Some(Err(e.into())),
        };
        self.readers.lock().expect("lock").push(conn);
        result
    }
}

async fn query(db: Arc<Db>, body: &[u8]) -> Result<Response<Full<Bytes>>, Failure> {
    let q: QueryBody = serde_json::from_slice(body)
        .map_err(|e| Failure(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let params = q.params.unwrap_or_default();
    let out = match db.try_read(&q.sql, &params) {
        Some(r) => r?,
        None => {
            blocking(move || {
                let conn = db.writer.lock().expect("lock");
                let mut stmt = conn.prepare_cached(&q.sql)?;
                Ok(run(&mut stmt, &params)?)
            })
            .await?
        }
    };
    Ok(json_response(StatusCode::OK, out))
}

async fn create_table(db: Arc<Db>, body: &[u8]) -> Result<Response<Full<Bytes>>, Failure> {
    let t: TableBody = serde_json::from_slice(body)
        .map_err(|e| Failure(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let cols: Vec<String> = t
        .columns
        .iter()
        .map(|c| {
            let mut s = quote_ident(&c.name);
            if let Some(ty) = &c.ty {
                s.push(' ');
                s.push_str(ty);
            }
            if c.primary_key {
                s.push_str(" PRIMARY KEY");
            }
            if c.not_null {
                s.push_str(" NOT NULL");
            }
            s
        })
        .collect();
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        quote_ident(&t.table_name),
        cols.join(", ")
    );
    blocking(move || Ok(db.writer.lock().expect("lock").execute(&sql, [])?)).await?;
    Ok(reply(
        StatusCode::CREATED,
        json!({"message": format!("Table '{}' created successfully.", t.table_name)}),
    ))
}

async fn insert_rows(
    db: Arc<Db>,
    table: &str,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, Failure> {
    let r: RowsBody = serde_json::from_slice(body)
        .map_err(|e| Failure(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    if r.rows.is_empty() {
        return Err(Failure(
            StatusCode::BAD_REQUEST,
            "No rows to insert.".into(),
        ));
    }
    let table = quote_ident(table);
    let n = blocking(move || {
        let mut conn = db.writer.lock().expect("lock");
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for row in &r.rows {
            let cols: Vec<String> = row.keys().map(|k| quote_ident(k)).collect();
            let marks = vec!["?"; cols.len()].join(", ");
            let sql = format!("INSERT INTO {table} ({}) VALUES ({marks})", cols.join(", "));
            let mut stmt = tx.prepare_cached(&sql)?;
            stmt.execute(rusqlite::params_from_iter(row.values().map(to_sql)))?;
        }
        tx.commit()?;
        Ok(r.rows.len())
    })
    .await?;
    Ok(reply(
        StatusCode::CREATED,
        json!({"message": "Rows inserted successfully.", "rows_affected": n}),
    ))
}

/// Runs `f` on Tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// Runs one prepared statement and renders the gateway's JSON answer.
fn run(stmt: &mut Statement<'_>, params: &[Value]) -> rusqlite::Result<Vec<u8>> {
    let params = rusqlite::params_from_iter(params.iter().map(to_sql));
    let mut out = Vec::with_capacity(256);
    let ncols = stmt.column_count();
    if ncols == 0 {
        let changes = stmt.execute(params)?;
        write!(
            out,
            r#"{{"message":"Query executed successfully.","rows_affected":{changes}}}"#
        )
        .expect("write to Vec");
        return Ok(out);
    }
    // Column names as JSON keys, rendered once per statement run.
    let keys: Vec<String> = stmt
        .column_names()
        .map(|n| serde_json::to_string(n).expect("a str serializes"))
        .collect();
    let mut rows = stmt.query(params)?;
    let mut n = 0u64;
    out.extend_from_slice(br#"{"data":["#);
    while let Some(row) = rows.next()? {
        if n > 0 {
            out.push(b',');
        }
        out.push(b'{');
        for (i, key) in keys.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(key.as_bytes());
            out.push(b':');
            write_value(&mut out, row.get_ref(i)?);
        }
        out.push(b'}');
        n += 1;
    }
    write!(out, r#"],"rows_affected":{n}}}"#).expect("write to Vec");
    Ok(out)
}

/// Writes one SQLite value as JSON (a blob as an array of bytes).
fn write_value(out: &mut Vec<u8>, v: ValueRef<'_>) {
    match v {
        ValueRef::Null => out.extend_from_slice(b"null"),
        ValueRef::Integer(i) => write!(out, "{i}").expect("write to Vec"),
        ValueRef::Real(f) => serde_json::to_writer(&mut *out, &f).expect("write to Vec"),
        ValueRef::Text(t) => {
            serde_json::to_writer(&mut *out, &String::from_utf8_lossy(t)).expect("write to Vec")
        }
        ValueRef::Blob(b) => serde_json::to_writer(&mut *out, b).expect("write to Vec"),
    }
}

/// A JSON parameter as an SQLite value.
fn to_sql(v: &Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        other => SqlValue::Text(other.to_string()),
    }
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_NAME
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn internal(e: impl std::fmt::Display) -> Failure {
    Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

fn reply(status: StatusCode, v: Value) -> Response<Full<Bytes>> {
    json_response(status, v.to_string().into_bytes())
}

fn error(status: StatusCode, detail: &str) -> Response<Full<Bytes>> {
    reply(status, json!({"detail": detail}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rows_and_changes_like_the_gateway() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, x REAL)")
            .unwrap();
        let mut ins = conn
            .prepare("INSERT INTO t(name, x) VALUES (?, ?)")
            .unwrap();
        let out = run(&mut ins, &[json!("Al\"ice"), json!(1100.0)]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"message":"Query executed successfully.","rows_affected":1}"#
        );
        let mut sel = conn
            .prepare("SELECT id, name, x, NULL AS n FROM t WHERE id = ?")
            .unwrap();
        let out = run(&mut sel, &[json!(1)]).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({"data": [{"id": 1, "name": "Al\"ice", "x": 1100.0, "n": null}], "rows_affected": 1})
        );
        assert!(sel.readonly());
        assert!(!ins.readonly());
    }

    #[test]
    fn names_follow_the_seed_rule() {
        assert!(valid_name("test_db_spawn_01"));
        assert!(valid_name("agent-alpha-memory"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
    }
}
