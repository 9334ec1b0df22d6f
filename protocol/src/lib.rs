//! The one wire protocol between the DB-Forge gateway and the worker.
//!
//! A session is a `docker exec -i` of the worker binary inside a database's
//! container. Both directions carry newline-delimited JSON, one object per line:
//!
//! 1. the worker's first line is a [`Hello`] that names [`PROTOCOL_VERSION`] and
//!    SQLite's version;
//! 2. then every line the client writes is a [`Request`] and every line the
//!    worker writes is a [`Response`] carrying the same `id`, in request order.
//!
//! A client may write many requests before reading any answer (pipelining).
//! The types here are the only definition of the protocol: the gateway and the
//! worker both compile this crate, so the two sides cannot drift.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

mod value;

pub use value::{Value, BLOB_TAG, REAL_TAG};

/// Version of the protocol. Bumped on any change that an older peer would
/// misread; the gateway refuses a session whose [`Hello`] names another.
pub const PROTOCOL_VERSION: u32 = 1;

/// The first line a session writes, before any answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Always [`PROTOCOL_VERSION`] of the worker that wrote it.
    pub protocol: u32,
    /// `sqlite3_libversion()` of the SQLite compiled into the worker.
    pub sqlite_version: String,
    /// The worker binary's own version (its crate version).
    pub worker_version: String,
}

/// One request line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the client; echoed in the answer. Lets a pipelining client
    /// check that answers line up with what it sent.
    pub id: u64,
    /// What to do.
    pub op: Op,
}

/// The operations a session performs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// Run one statement. Outside a transaction opened with [`Op::Begin`] it
    /// runs in autocommit mode, so statements that control transactions
    /// (`BEGIN`, `COMMIT`, `SAVEPOINT`, ...) are refused here.
    Execute(Statement),
    /// Run a list of statements in one transaction: all applied or none.
    Batch {
        /// Executed in order; the answer has one result per statement.
        statements: Vec<Statement>,
    },
    /// Open a transaction that spans the following requests of this session.
    Begin {
        /// How the transaction takes its locks.
        #[serde(default)]
        mode: BeginMode,
    },
    /// Commit the transaction opened by [`Op::Begin`].
    Commit,
    /// Roll back the transaction opened by [`Op::Begin`].
    Rollback,
    /// Describe the schema: tables, views, columns, indexes, foreign keys.
    Schema,
    /// Answer at once; proves the session is alive.
    Ping,
}

/// How [`Op::Begin`] opens its transaction (SQLite's `BEGIN` modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BeginMode {
    /// Takes the write lock at once, so a later write cannot fail with BUSY
    /// because another connection wrote first. The default.
    #[default]
    Immediate,
    /// Takes locks lazily; only for transactions that just read.
    Deferred,
    /// Like immediate (in WAL mode the two are the same).
    Exclusive,
}

/// One SQL statement and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// Exactly one SQL statement; trailing whitespace and `;` are allowed.
    pub sql: String,
    /// Bound by position or by name.
    #[serde(default, skip_serializing_if = "Params::is_empty")]
    pub params: Params,
}

impl Statement {
    /// A statement without parameters.
    pub fn new(sql: impl Into<String>) -> Self {
        Statement {
            sql: sql.into(),
            params: Params::None,
        }
    }
}

/// Parameters of a statement.
///
/// `Positional` binds `?`, `?NNN` (1-based) in order; `Named` binds `:name`,
/// `@name` and `$name` (a key may be given with or without its prefix).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(untagged)]
pub enum Params {
    /// No parameters (`null` or absent on the wire).
    #[default]
    None,
    /// A JSON array.
    Positional(Vec<Value>),
    /// A JSON object.
    Named(BTreeMap<String, Value>),
}

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ParamsVisitor)
    }
}

/// Reads params without buffering (as `untagged` would) and with errors that
/// say which parameter is wrong.
struct ParamsVisitor;

impl<'de> serde::de::Visitor<'de> for ParamsVisitor {
    type Value = Params;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("params as an array (positional) or an object (named)")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Params, E> {
        Ok(Params::None)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Params, E> {
        Ok(Params::None)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Params, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        loop {
            let index = values.len();
            match seq.next_element::<Value>() {
                Ok(Some(v)) => values.push(v),
                Ok(None) => return Ok(Params::Positional(values)),
                Err(e) => return Err(serde::de::Error::custom(format!("params[{index}]: {e}"))),
            }
        }
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Params, A::Error> {
        let mut values = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            match map.next_value::<Value>() {
                Ok(v) => {
                    values.insert(key, v);
                }
                Err(e) => return Err(serde::de::Error::custom(format!("params.{key}: {e}"))),
            }
        }
        Ok(Params::Named(values))
    }
}

impl Params {
    /// True when there is nothing to bind.
    pub fn is_empty(&self) -> bool {
        match self {
            Params::None => true,
            Params::Positional(v) => v.is_empty(),
            Params::Named(m) => m.is_empty(),
        }
    }
}

/// One answer line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The request's id; `None` only when a line was too broken to read one.
    pub id: Option<u64>,
    /// What happened.
    pub outcome: Outcome,
}

/// Success or failure of one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The request succeeded.
    Ok(Payload),
    /// The request failed; the session goes on.
    Error(WireError),
}

/// What a successful request returns, by operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    /// Answer to [`Op::Execute`].
    Query(QueryResult),
    /// Answer to [`Op::Batch`]: one result per statement, in order.
    Batch(Vec<QueryResult>),
    /// Answer to [`Op::Begin`], [`Op::Commit`] and [`Op::Rollback`].
    Transaction {
        /// Whether a transaction is open after the request.
        in_transaction: bool,
    },
    /// Answer to [`Op::Schema`].
    Schema(Schema),
    /// Answer to [`Op::Ping`].
    Pong,
}

/// The result of one statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryResult {
    /// The statement's result columns; empty when it returns no rows. SQLite
    /// decides this (column count of the prepared statement), not the SQL text.
    pub columns: Vec<Column>,
    /// The rows, each with one value per column.
    pub rows: Vec<Vec<Value>>,
    /// Rows inserted, updated or deleted by the statement (`sqlite3_changes`);
    /// 0 for statements that do not change rows.
    pub rows_changed: u64,
    /// `sqlite3_last_insert_rowid` after the statement.
    pub last_insert_rowid: i64,
    /// Time spent preparing and stepping the statement, in microseconds.
    pub elapsed_us: u64,
}

impl QueryResult {
    /// True when the statement is one that returns rows (even zero of them).
    pub fn returns_rows(&self) -> bool {
        !self.columns.is_empty()
    }
}

/// One result column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// The column's name as SQLite reports it.
    pub name: String,
    /// Declared type of the source column, when it comes from a table column.
    pub decl_type: Option<String>,
}

/// The schema of a database.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Schema {
    /// User tables and views, ordered by name (SQLite's own are left out).
    pub tables: Vec<TableInfo>,
}

/// A table or a view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableInfo {
    /// Its name.
    pub name: String,
    /// `table` or `view`.
    pub kind: String,
    /// The `CREATE` statement that made it.
    pub sql: Option<String>,
    /// Its columns, in order.
    pub columns: Vec<ColumnInfo>,
    /// Its indexes (none for a view).
    pub indexes: Vec<IndexInfo>,
    /// Its foreign keys (none for a view).
    pub foreign_keys: Vec<ForeignKeyInfo>,
    /// Number of rows; `None` for a view.
    pub row_count: Option<u64>,
}

/// A column of a table or view (`PRAGMA table_info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnInfo {
    /// Its name.
    pub name: String,
    /// Declared type, as written (may be empty).
    pub decl_type: String,
    /// Whether it is `NOT NULL`.
    pub not_null: bool,
    /// The default's SQL text, if any.
    pub default: Option<String>,
    /// Position in the primary key, 1-based; 0 when not part of it.
    pub primary_key: u32,
}

/// An index of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexInfo {
    /// Its name.
    pub name: String,
    /// Whether it is unique.
    pub unique: bool,
    /// How it came to be: `c` (CREATE INDEX), `u` (UNIQUE), `pk` (PRIMARY KEY).
    pub origin: String,
    /// Indexed columns, in order (`None` for an expression).
    pub columns: Vec<Option<String>>,
}

/// A foreign key column mapping (`PRAGMA foreign_key_list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKeyInfo {
    /// Which foreign key this column belongs to (composite keys share it).
    pub id: i64,
    /// The column in this table.
    pub from: String,
    /// The referenced table.
    pub table: String,
    /// The referenced column (`None`: the referenced table's primary key).
    pub to: Option<String>,
    /// `ON UPDATE` action.
    pub on_update: String,
    /// `ON DELETE` action.
    pub on_delete: String,
}

/// A failed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// Human-readable; SQLite's own message where there is one.
    pub message: String,
}

impl WireError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for WireError {}

/// Stable error codes. SQLite's primary result codes where they apply, then
/// DB-Forge's own. Serialized as `SCREAMING_SNAKE_CASE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// SQLITE_ERROR: a syntax error, a missing table, ... (the usual one).
    SqlError,
    /// SQLITE_CONSTRAINT: a UNIQUE, NOT NULL, CHECK or FOREIGN KEY violation.
    Constraint,
    /// SQLITE_BUSY: another connection held a lock past the busy timeout.
    Busy,
    /// SQLITE_LOCKED: a conflict inside this connection.
    Locked,
    /// SQLITE_READONLY: a write where only reads are allowed.
    Readonly,
    /// SQLITE_MISMATCH: a datatype mismatch (e.g. a non-integer rowid).
    Mismatch,
    /// SQLITE_RANGE: a parameter index out of range.
    Range,
    /// SQLITE_TOOBIG: a string or blob over SQLite's length limit.
    TooBig,
    /// SQLITE_IOERR: the operating system reported an I/O error.
    IoErr,
    /// SQLITE_CORRUPT: the database file is malformed.
    Corrupt,
    /// SQLITE_CANTOPEN: the database file could not be opened.
    CantOpen,
    /// SQLITE_NOMEM: SQLite ran out of memory.
    NoMem,
    /// SQLITE_MISUSE and other SQLite codes with no better home.
    Misuse,
    /// The request ran past its time limit and was interrupted.
    Timeout,
    /// A write would grow the database past its size quota.
    QuotaExceeded,
    /// The answer would exceed the row or byte cap of one answer.
    TooLarge,
    /// The request itself is malformed (not JSON, unknown operation, bad
    /// parameter, more than one statement, ...).
    BadRequest,
    /// The statement is refused by DB-Forge's safety rules.
    Forbidden,
    /// A bug or an unexpected state in the worker.
    Internal,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 19] = [
        ErrorCode::SqlError,
        ErrorCode::Constraint,
        ErrorCode::Busy,
        ErrorCode::Locked,
        ErrorCode::Readonly,
        ErrorCode::Mismatch,
        ErrorCode::Range,
        ErrorCode::TooBig,
        ErrorCode::IoErr,
        ErrorCode::Corrupt,
        ErrorCode::CantOpen,
        ErrorCode::NoMem,
        ErrorCode::Misuse,
        ErrorCode::Timeout,
        ErrorCode::QuotaExceeded,
        ErrorCode::TooLarge,
        ErrorCode::BadRequest,
        ErrorCode::Forbidden,
        ErrorCode::Internal,
    ];

    /// The code as it appears on the wire and in HTTP error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::SqlError => "SQL_ERROR",
            ErrorCode::Constraint => "CONSTRAINT",
            ErrorCode::Busy => "BUSY",
            ErrorCode::Locked => "LOCKED",
            ErrorCode::Readonly => "READONLY",
            ErrorCode::Mismatch => "MISMATCH",
            ErrorCode::Range => "RANGE",
            ErrorCode::TooBig => "TOO_BIG",
            ErrorCode::IoErr => "IO_ERR",
            ErrorCode::Corrupt => "CORRUPT",
            ErrorCode::CantOpen => "CANT_OPEN",
            ErrorCode::NoMem => "NO_MEM",
            ErrorCode::Misuse => "MISUSE",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::QuotaExceeded => "QUOTA_EXCEEDED",
            ErrorCode::TooLarge => "TOO_LARGE",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

/// Encodes one message as a line: JSON followed by `\n`.
pub fn to_line<T: Serialize>(msg: &T, out: &mut Vec<u8>) {
    // Serializing these types into a Vec cannot fail: every map key is a
    // string and every value is representable.
    serde_json::to_writer(&mut *out, msg).expect("protocol types always serialize");
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + fmt::Debug>(v: &T) {
        let mut line = Vec::new();
        to_line(v, &mut line);
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let back: T = serde_json::from_slice(&line).unwrap();
        assert_eq!(&back, v);
    }

    #[test]
    fn requests_round_trip() {
        let mut named = BTreeMap::new();
        named.insert(":a".to_string(), Value::Integer(i64::MIN));
        for op in [
            Op::Execute(Statement::new("select 1")),
            Op::Execute(Statement {
                sql: "select ?".into(),
                params: Params::Positional(vec![Value::Blob(vec![0, 255])]),
            }),
            Op::Execute(Statement {
                sql: "select :a".into(),
                params: Params::Named(named),
            }),
            Op::Batch {
                statements: vec![Statement::new("a"), Statement::new("b")],
            },
            Op::Begin {
                mode: BeginMode::Deferred,
            },
            Op::Commit,
            Op::Rollback,
            Op::Schema,
            Op::Ping,
        ] {
            round_trip(&Request { id: 7, op });
        }
    }

    #[test]
    fn wire_shape_is_stable() {
        let line = serde_json::to_string(&Request {
            id: 1,
            op: Op::Execute(Statement::new("select 1")),
        })
        .unwrap();
        assert_eq!(line, r#"{"id":1,"op":{"execute":{"sql":"select 1"}}}"#);
        let line = serde_json::to_string(&Request {
            id: 2,
            op: Op::Ping,
        })
        .unwrap();
        assert_eq!(line, r#"{"id":2,"op":"ping"}"#);
        let err = Response {
            id: Some(3),
            outcome: Outcome::Error(WireError::new(ErrorCode::QuotaExceeded, "full")),
        };
        assert_eq!(
            serde_json::to_string(&err).unwrap(),
            r#"{"id":3,"outcome":{"error":{"code":"QUOTA_EXCEEDED","message":"full"}}}"#
        );
    }

    #[test]
    fn begin_mode_defaults_to_immediate() {
        let r: Request = serde_json::from_str(r#"{"id":1,"op":{"begin":{}}}"#).unwrap();
        assert_eq!(
            r.op,
            Op::Begin {
                mode: BeginMode::Immediate
            }
        );
    }

    #[test]
    fn params_absent_null_array_object() {
        for (json, want) in [
            (r#"{"sql":"x"}"#, Params::None),
            (r#"{"sql":"x","params":null}"#, Params::None),
            (
                r#"{"sql":"x","params":[1]}"#,
                Params::Positional(vec![Value::Integer(1)]),
            ),
        ] {
            let s: Statement = serde_json::from_str(json).unwrap();
            assert_eq!(s.params, want);
        }
        let s: Statement = serde_json::from_str(r#"{"sql":"x","params":{"a":"b"}}"#).unwrap();
        assert!(matches!(s.params, Params::Named(m) if m["a"] == Value::Text("b".into())));
        let err = serde_json::from_str::<Statement>(r#"{"sql":"x","params":[1,[2]]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("params[1]"), "{err}");
        assert!(serde_json::from_str::<Statement>(r#"{"sql":"x","params":"a"}"#).is_err());
    }

    #[test]
    fn responses_round_trip() {
        let q = QueryResult {
            columns: vec![Column {
                name: "a".into(),
                decl_type: Some("INTEGER".into()),
            }],
            rows: vec![vec![Value::Integer(i64::MAX)], vec![Value::Null]],
            rows_changed: 0,
            last_insert_rowid: -1,
            elapsed_us: 12,
        };
        for outcome in [
            Outcome::Ok(Payload::Query(q.clone())),
            Outcome::Ok(Payload::Batch(vec![q])),
            Outcome::Ok(Payload::Transaction {
                in_transaction: true,
            }),
            Outcome::Ok(Payload::Schema(Schema::default())),
            Outcome::Ok(Payload::Pong),
            Outcome::Error(WireError::new(ErrorCode::Timeout, "interrupted")),
        ] {
            round_trip(&Response { id: None, outcome });
        }
        round_trip(&Hello {
            protocol: PROTOCOL_VERSION,
            sqlite_version: "3.50.0".into(),
            worker_version: "0.1.0".into(),
        });
    }

    #[test]
    fn every_code_serializes_as_its_str() {
        for c in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }
}
