//! One function per route: parse the request, act, shape the answer. The
//! answers' words are the seed's (`../shared/api-contract.md`); fields DB-Forge
//! adds come after them.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use dbforge_protocol::{BeginMode, Column, Op, Params, Payload, QueryResult, Statement, Value};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::json;

use super::routes::{query_pairs, Route};
use super::{parse_json, read_body, App, Reply};
use crate::config::Synchronous;
use crate::error::ApiError;
use crate::names::DbName;
use crate::registry::{Spawned, MAX_MAX_DB_BYTES, MIN_MAX_DB_BYTES};
use crate::runtime::DbSettings;
use crate::sql;

/// Routes a parsed request to its handler.
pub async fn dispatch(app: &App, route: Route, req: Request<Incoming>) -> Result<Reply, ApiError> {
    let limit = app.config.max_body_bytes;
    match route {
        Route::Root => Ok(Reply::json(
            StatusCode::OK,
            &json!({"message": "Praetorian DB-Forge is online."}),
        )),
        Route::Health => health(app).await,
        Route::ListDatabases => list(app).await,
        Route::Spawn(db) => {
            let name = db_name(&db)?;
            let body = read_body(req, limit).await?;
            spawn(app, name, body.as_deref()).await
        }
        Route::Prune(db) => {
            let name = db_name(&db)?;
            app.registry.prune(&name).await?;
            Ok(Reply::json(
                StatusCode::OK,
                &json!({"message": "Database instance pruned successfully.", "db_name": name.as_str()}),
            ))
        }
        Route::Describe(db) => describe(app, db_name(&db)?).await,
        Route::Delete(db) => {
            let name = db_name(&db)?;
            app.registry.destroy(&name).await?;
            Ok(Reply::json(
                StatusCode::OK,
                &json!({"message": "Database deleted successfully.", "db_name": name.as_str()}),
            ))
        }
        Route::Query(db) => query_route(app, &db, None, req).await,
        Route::Batch(db) => batch_route(app, &db, None, req).await,
        Route::Begin(db) => {
            let name = db_name(&db)?;
            let body: BeginBody = match read_body(req, limit).await? {
                Some(b) => parse_json(&b)?,
                None => BeginBody::default(),
            };
            let id = app
                .registry
                .begin(&name, body.mode.unwrap_or_default())
                .await?;
            Ok(Reply::json(
                StatusCode::CREATED,
                &json!({
                    "message": "Transaction begun.",
                    "transaction_id": id,
                    "idle_timeout_ms": app.config.tx_idle_timeout_ms,
                }),
            ))
        }
        Route::TxQuery(db, tx) => query_route(app, &db, Some(&tx), req).await,
        Route::TxBatch(db, tx) => batch_route(app, &db, Some(&tx), req).await,
        Route::Commit(db, tx) => {
            app.registry.finish(&db_name(&db)?, &tx, true).await?;
            Ok(Reply::json(
                StatusCode::OK,
                &json!({"message": "Transaction committed.", "transaction_id": tx}),
            ))
        }
        Route::Rollback(db, tx) => {
            app.registry.finish(&db_name(&db)?, &tx, false).await?;
            Ok(Reply::json(
                StatusCode::OK,
                &json!({"message": "Transaction rolled back.", "transaction_id": tx}),
            ))
        }
        Route::Schema(db) => {
            let name = db_name(&db)?;
            match execute(app, &name, Op::Schema).await? {
                Payload::Schema(schema) => Ok(Reply::json(StatusCode::OK, &schema)),
                other => Err(unexpected(other)),
            }
        }
        Route::CreateTable(db) => {
            let name = db_name(&db)?;
            let body: sql::CreateTable = json_body(req, limit).await?;
            let ddl = body.to_sql().map_err(ApiError::Validation)?;
            query(app, &name, Op::Execute(Statement::new(ddl))).await?;
            Ok(Reply::json(
                StatusCode::CREATED,
                &json!({"message": format!("Table '{}' created successfully.", body.table_name)}),
            ))
        }
        Route::ReadRows(db, table) => {
            let name = db_name(&db)?;
            let filters = query_pairs(req.uri().query().unwrap_or(""))?;
            let select = sql::select_rows(&table, &filters).map_err(ApiError::Validation)?;
            let result = query(app, &name, Op::Execute(select)).await?;
            Ok(Reply::json(StatusCode::OK, &QueryAnswer(&result)))
        }
        Route::InsertRows(db, table) => {
            let name = db_name(&db)?;
            let body: RowsBody = json_body(req, limit).await?;
            let statements = sql::insert_rows(&table, &body.rows, app.config.max_line_bytes() / 2)
                .map_err(|e| match e {
                    sql::InsertError::Invalid(m) => ApiError::BadRequest(m),
                    sql::InsertError::TooLarge { .. } => ApiError::BodyTooLarge { limit },
                })?;
            match execute(app, &name, Op::Batch { statements }).await? {
                Payload::Batch(results) => {
                    let inserted: u64 = results.iter().map(|r| r.rows_changed).sum();
                    Ok(Reply::json(
                        StatusCode::CREATED,
                        &json!({"message": "Rows inserted successfully.", "rows_affected": inserted}),
                    ))
                }
                other => Err(unexpected(other)),
            }
        }
    }
}

/// `/query`, on the pool or inside transaction `tx`.
async fn query_route(
    app: &App,
    db: &str,
    tx: Option<&str>,
    req: Request<Incoming>,
) -> Result<Reply, ApiError> {
    let name = db_name(db)?;
    let body: QueryBody = json_body(req, app.config.max_body_bytes).await?;
    let op = Op::Execute(Statement {
        sql: body.sql,
        params: body.params,
    });
    match run(app, &name, tx, op).await? {
        Payload::Query(result) => Ok(Reply::json(StatusCode::OK, &QueryAnswer(&result))),
        other => Err(unexpected(other)),
    }
}

/// `/batch`, on the pool or inside transaction `tx`.
async fn batch_route(
    app: &App,
    db: &str,
    tx: Option<&str>,
    req: Request<Incoming>,
) -> Result<Reply, ApiError> {
    let name = db_name(db)?;
    let body: BatchBody = json_body(req, app.config.max_body_bytes).await?;
    if body.statements.is_empty() {
        return Err(ApiError::BadRequest(
            "statements must hold at least one statement".into(),
        ));
    }
    let op = Op::Batch {
        statements: body.statements,
    };
    match run(app, &name, tx, op).await? {
        Payload::Batch(results) => {
            let answers: Vec<QueryAnswer> = results.iter().map(QueryAnswer).collect();
            Ok(Reply::json(StatusCode::OK, &json!({ "results": answers })))
        }
        other => Err(unexpected(other)),
    }
}

/// Runs `op` on the database's pool, or inside transaction `tx`.
async fn run(app: &App, name: &DbName, tx: Option<&str>, op: Op) -> Result<Payload, ApiError> {
    match tx {
        Some(tx) => app.registry.execute_in(name, tx, op).await,
        None => execute(app, name, op).await,
    }
}

fn db_name(raw: &str) -> Result<DbName, ApiError> {
    DbName::parse(raw).map_err(ApiError::InvalidName)
}

async fn json_body<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
    limit: usize,
) -> Result<T, ApiError> {
    match read_body(req, limit).await? {
        Some(body) => parse_json(&body),
        None => Err(ApiError::MalformedJson(
            "the request needs a JSON body".into(),
        )),
    }
}

fn unexpected(payload: Payload) -> ApiError {
    ApiError::SessionLost(format!(
        "the worker answered with the wrong kind of result: {payload:?}"
    ))
}

async fn execute(app: &App, name: &DbName, op: Op) -> Result<Payload, ApiError> {
    if app.shutting_down.load(Ordering::Relaxed) {
        return Err(ApiError::ShuttingDown);
    }
    app.registry.execute(name, op).await
}

async fn query(app: &App, name: &DbName, op: Op) -> Result<QueryResult, ApiError> {
    match execute(app, name, op).await? {
        Payload::Query(result) => Ok(result),
        other => Err(unexpected(other)),
    }
}

async fn health(app: &App) -> Result<Reply, ApiError> {
    app.registry.runtime().ping().await?;
    Ok(Reply::json(
        StatusCode::OK,
        &json!({"status": "ok", "docker": "ok", "version": env!("CARGO_PKG_VERSION")}),
    ))
}

async fn list(app: &App) -> Result<Reply, ApiError> {
    let all = app.registry.list().await?;
    let items: Vec<_> = all
        .iter()
        .filter_map(|i| {
            let c = i.container.as_ref()?;
            Some(json!({"name": i.name.as_str(), "container_id": c.id, "status": c.state}))
        })
        .collect();
    Ok(Reply::json(StatusCode::OK, &items))
}

/// Optional body of a spawn.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpawnBody {
    synchronous: Option<Synchronous>,
    max_size_bytes: Option<u64>,
}

async fn spawn(app: &App, name: DbName, body: Option<&[u8]>) -> Result<Reply, ApiError> {
    let options: SpawnBody = match body {
        Some(b) => parse_json(b)?,
        None => SpawnBody::default(),
    };
    let max_bytes = options
        .max_size_bytes
        .unwrap_or(app.config.default_max_db_bytes);
    if !(MIN_MAX_DB_BYTES..=MAX_MAX_DB_BYTES).contains(&max_bytes) {
        return Err(ApiError::Validation(format!(
            "max_size_bytes must be between {MIN_MAX_DB_BYTES} and {MAX_MAX_DB_BYTES}"
        )));
    }
    let settings = DbSettings {
        synchronous: options
            .synchronous
            .unwrap_or(app.config.default_synchronous),
        max_bytes,
    };
    let (spawned, container) = app.registry.spawn(&name, settings).await?;
    let (status, message) = match spawned {
        Spawned::Created => (
            StatusCode::CREATED,
            "Database instance spawned successfully.",
        ),
        Spawned::Existing => (
            StatusCode::OK,
            "Database instance already exists and is running.",
        ),
    };
    Ok(Reply::json(
        status,
        &json!({"message": message, "db_name": name.as_str(), "container_id": container.id}),
    ))
}

async fn describe(app: &App, name: DbName) -> Result<Reply, ApiError> {
    let details = app.registry.details(&name).await?;
    let i = &details.instance;
    let c = &app.config;
    Ok(Reply::json(
        StatusCode::OK,
        &json!({
            "name": i.name.as_str(),
            "container_id": i.container.as_ref().map(|c| &c.id),
            "status": i.container.as_ref().map(|c| c.state.as_str()).unwrap_or("pruned"),
            "created": i.created,
            "size_bytes": details.size_bytes,
            "settings": {
                "synchronous": i.settings.synchronous,
                "max_size_bytes": i.settings.max_bytes,
            },
            "limits": {
                "memory_mb": c.container_memory_mb,
                "pids": c.container_pids,
                "cpus": c.container_cpus,
                "statement_timeout_ms": c.statement_timeout_ms,
                "max_rows": c.max_rows,
                "max_answer_bytes": c.max_answer_bytes,
                "max_body_bytes": c.max_body_bytes,
            },
        }),
    ))
}

/// `POST /api/db/{db}/query` body.
#[derive(Debug, Deserialize)]
struct QueryBody {
    sql: String,
    #[serde(default)]
    params: Params,
}

/// `POST /api/db/{db}/transactions` body (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BeginBody {
    mode: Option<BeginMode>,
}

/// `POST /api/db/{db}/batch` body.
#[derive(Debug, Deserialize)]
struct BatchBody {
    statements: Vec<Statement>,
}

/// `POST /api/db/{db}/tables/{t}/rows` body.
#[derive(Debug, Deserialize)]
struct RowsBody {
    rows: Vec<BTreeMap<String, Value>>,
}

/// A statement's result in the seed's shape: `data` (rows as objects) and
/// `rows_affected` (rows returned) for statements that return rows, else
/// `message` and `rows_affected` (rows changed); then DB-Forge's additions.
struct QueryAnswer<'a>(&'a QueryResult);

impl Serialize for QueryAnswer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        if r.returns_rows() {
            let mut m = s.serialize_map(Some(3))?;
            m.serialize_entry("data", &RowObjects::new(&r.columns, &r.rows))?;
            m.serialize_entry("rows_affected", &r.rows.len())?;
            let names: Vec<&str> = r.columns.iter().map(|c| c.name.as_str()).collect();
            m.serialize_entry("columns", &names)?;
            m.end()
        } else {
            let mut m = s.serialize_map(Some(3))?;
            m.serialize_entry("message", "Query executed successfully.")?;
            m.serialize_entry("rows_affected", &r.rows_changed)?;
            m.serialize_entry("last_insert_rowid", &r.last_insert_rowid)?;
            m.end()
        }
    }
}

/// Rows as JSON objects keyed by column name, in column order. Where two
/// columns share a name the later one wins, as in a dict built from the row.
struct RowObjects<'a> {
    columns: &'a [Column],
    rows: &'a [Vec<Value>],
    keep: Vec<bool>,
}

impl<'a> RowObjects<'a> {
    fn new(columns: &'a [Column], rows: &'a [Vec<Value>]) -> Self {
        let keep = columns
            .iter()
            .enumerate()
            .map(|(i, c)| !columns[i + 1..].iter().any(|later| later.name == c.name))
            .collect();
        RowObjects {
            columns,
            rows,
            keep,
        }
    }
}

impl Serialize for RowObjects<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.rows.len()))?;
        for row in self.rows {
            seq.serialize_element(&RowObject { outer: self, row })?;
        }
        seq.end()
    }
}

struct RowObject<'a, 'b> {
    outer: &'b RowObjects<'a>,
    row: &'b [Value],
}

impl Serialize for RowObject<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for ((col, value), keep) in self
            .outer
            .columns
            .iter()
            .zip(self.row)
            .zip(&self.outer.keep)
        {
            if *keep {
                m.serialize_entry(&col.name, value)?;
            }
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str) -> Column {
        Column {
            name: name.into(),
            decl_type: None,
        }
    }

    #[test]
    fn rows_answer_in_the_seed_shape() {
        let r = QueryResult {
            columns: vec![col("id"), col("name"), col("id")],
            rows: vec![vec![
                Value::Integer(1),
                Value::Text("Alice".into()),
                Value::Real(1100.0),
            ]],
            rows_changed: 0,
            last_insert_rowid: 0,
            elapsed_us: 3,
        };
        let text = serde_json::to_string(&QueryAnswer(&r)).unwrap();
        assert_eq!(
            text,
            r#"{"data":[{"name":"Alice","id":1100.0}],"rows_affected":1,"columns":["id","name","id"]}"#
        );
    }

    #[test]
    fn statements_answer_with_changes() {
        let r = QueryResult {
            columns: vec![],
            rows: vec![],
            rows_changed: 2,
            last_insert_rowid: 9,
            elapsed_us: 3,
        };
        let v = serde_json::to_value(QueryAnswer(&r)).unwrap();
        assert_eq!(v["message"], "Query executed successfully.");
        assert_eq!(v["rows_affected"], 2);
        assert_eq!(v["last_insert_rowid"], 9);
    }
}
