//! The session's SQLite connection: opening it safely, and running the
//! statements of one request.

use std::sync::Arc;
use std::time::Instant;

use dbforge_protocol::{
    Column, ColumnInfo, ErrorCode, ForeignKeyInfo, IndexInfo, Params, QueryResult, Schema,
    Statement, TableInfo, Value, WireError,
};
use rusqlite::config::DbConfig;
use rusqlite::fallible_iterator::FallibleIterator;
use rusqlite::limits::Limit;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{ffi, Connection, OpenFlags};

use crate::config::{Limits, SessionConfig, MAX_VALUE_BYTES, PROGRESS_CHECK_OPS};
use crate::guard::{Seen, Shared};

/// SQLite's `SQLITE_NOTADB` ("file is not a database"): reported as CORRUPT.
const SQLITE_NOTADB: i32 = 26;

/// A request-level error with code BAD_REQUEST.
pub fn bad_request(message: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::BadRequest, message)
}

/// The connection of one session, with its safety rules installed.
pub struct Db {
    conn: Connection,
    shared: Arc<Shared>,
    limits: Limits,
}

/// A compiled client statement and what the authorizer saw in it.
pub struct Prepared<'c> {
    stmt: rusqlite::Statement<'c>,
    /// What the statement does, as seen by the authorizer.
    pub seen: Seen,
    /// `sqlite3_stmt_readonly`.
    pub readonly: bool,
    /// Whether the statement returns rows (`column_count() > 0`).
    pub returns_rows: bool,
}

impl Prepared<'_> {
    /// A statement that only writes rows (INSERT, UPDATE, DELETE, with or
    /// without RETURNING): no schema change, pragma or transaction control.
    /// Such statements may share a group commit.
    pub fn is_plain_write(&self) -> bool {
        let s = self.seen;
        s.writes && !s.ddl && !s.transaction && !s.pragma
    }

    /// A statement that only reads rows (a SELECT, however it is written).
    pub fn is_plain_read(&self) -> bool {
        let s = self.seen;
        self.readonly && !s.writes && !s.ddl && !s.transaction && !s.pragma
    }
}

/// What one answer may still hold.
#[derive(Debug, Clone)]
pub struct Budget {
    max_rows: u64,
    max_bytes: u64,
    rows: u64,
    bytes: u64,
}

impl Budget {
    /// A full budget for one answer.
    pub fn new(limits: &Limits) -> Self {
        Budget {
            max_rows: limits.max_rows,
            max_bytes: limits.max_answer_bytes,
            rows: 0,
            bytes: 0,
        }
    }

    /// Estimated bytes used so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn add_row(&mut self) -> Result<(), WireError> {
        self.rows += 1;
        if self.rows > self.max_rows {
            return Err(WireError::new(
                ErrorCode::TooLarge,
                format!(
                    "the answer has more than {} rows, the limit of one answer; \
                     narrow the query or page through it with LIMIT and OFFSET",
                    self.max_rows
                ),
            ));
        }
        self.add_bytes(2)
    }

    fn add_bytes(&mut self, n: u64) -> Result<(), WireError> {
        self.bytes = self.bytes.saturating_add(n);
        if self.bytes > self.max_bytes {
            return Err(WireError::new(
                ErrorCode::TooLarge,
                format!(
                    "the answer is larger than {} bytes, the limit of one answer; \
                     narrow the query or page through it with LIMIT and OFFSET",
                    self.max_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// Upper estimate of a value's size in the JSON answer, computed before the
/// value is copied out of SQLite.
fn estimate(v: &ValueRef<'_>) -> u64 {
    let n = match v {
        ValueRef::Null => 5,
        ValueRef::Integer(_) => 21,
        ValueRef::Real(_) => 26,
        ValueRef::Text(t) => {
            // Quotes, a comma, and `\u00XX` for control characters.
            let escaped = t
                .iter()
                .filter(|&&b| b < 0x20 || b == b'"' || b == b'\\')
                .count();
            3 + t.len() + 5 * escaped
        }
        ValueRef::Blob(b) => 14 + b.len().div_ceil(3) * 4,
    };
    n as u64
}

fn to_value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        // SQLite can hold text that is not UTF-8 (e.g. CAST(x'ff' AS TEXT));
        // JSON cannot, so such bytes become U+FFFD.
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

fn to_sql(v: &Value) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(match v {
        Value::Null => ValueRef::Null,
        Value::Integer(i) => ValueRef::Integer(*i),
        Value::Real(f) => ValueRef::Real(*f),
        Value::Text(t) => ValueRef::Text(t.as_bytes()),
        Value::Blob(b) => ValueRef::Blob(b),
    })
}

/// `"name"` with embedded quotes doubled: an SQL identifier for any name.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Maps a SQLite primary result code to the protocol's code.
pub fn code_for(primary: i32) -> ErrorCode {
    match primary {
        ffi::SQLITE_ERROR => ErrorCode::SqlError,
        ffi::SQLITE_CONSTRAINT => ErrorCode::Constraint,
        ffi::SQLITE_BUSY => ErrorCode::Busy,
        ffi::SQLITE_LOCKED => ErrorCode::Locked,
        ffi::SQLITE_READONLY => ErrorCode::Readonly,
        ffi::SQLITE_MISMATCH => ErrorCode::Mismatch,
        ffi::SQLITE_RANGE => ErrorCode::Range,
        ffi::SQLITE_TOOBIG => ErrorCode::TooBig,
        ffi::SQLITE_IOERR => ErrorCode::IoErr,
        ffi::SQLITE_CORRUPT | SQLITE_NOTADB => ErrorCode::Corrupt,
        ffi::SQLITE_CANTOPEN => ErrorCode::CantOpen,
        ffi::SQLITE_NOMEM => ErrorCode::NoMem,
        ffi::SQLITE_AUTH => ErrorCode::Forbidden,
        ffi::SQLITE_FULL => ErrorCode::QuotaExceeded,
        ffi::SQLITE_INTERRUPT => ErrorCode::Timeout,
        _ => ErrorCode::Misuse,
    }
}

impl Db {
    /// Opens (creating if needed) the database and installs the safety rules.
    pub fn open(cfg: &SessionConfig) -> Result<Db, WireError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let open_err = |e: rusqlite::Error| {
            let mut w = plain_error(e);
            w.message = format!("cannot open {}: {}", cfg.db.display(), w.message);
            w
        };
        let mut conn = Connection::open_with_flags(&cfg.db, flags).map_err(open_err)?;
        let limits = cfg.limits.clone();
        // Order matters: the busy timeout first (switching to WAL takes a lock
        // another session may hold), the authorizer last (it would refuse our
        // own settings).
        conn.busy_timeout(limits.busy_timeout).map_err(open_err)?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
            .map_err(open_err)?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)
            .map_err(open_err)?;
        // One attached database at most: plain VACUUM attaches a temporary
        // one (0 would break it); the authorizer refuses every other ATTACH.
        conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 1)
            .map_err(open_err)?;
        conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
            .map_err(open_err)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            eprintln!("dbforge-worker: warning: journal_mode is {mode}, not wal");
        }
        conn.pragma_update(None, "synchronous", cfg.synchronous.as_pragma())
            .map_err(open_err)?;
        // Temporary files go where SQLite puts them by default: /tmp, a tmpfs
        // in the container.
        conn.pragma_update(None, "temp_store", "DEFAULT")
            .map_err(open_err)?;
        let page_size: i64 = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .map_err(open_err)?;
        let pages = (limits.max_bytes / page_size.max(1) as u64).clamp(1, u32::MAX as u64) as i64;
        conn.pragma_update(None, "max_page_count", pages)
            .map_err(open_err)?;

        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        conn.progress_handler(PROGRESS_CHECK_OPS, Some(move || s.past_deadline()))
            .map_err(open_err)?;
        let s = shared.clone();
        conn.commit_hook(Some(move || {
            s.count_commit();
            false
        }))
        .map_err(open_err)?;
        let s = shared.clone();
        conn.authorizer(Some(move |ctx: rusqlite::hooks::AuthContext<'_>| {
            s.authorize(ctx)
        }))
        .map_err(open_err)?;
        Ok(Db {
            conn,
            shared,
            limits,
        })
    }

    /// The limits this connection enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Transactions committed by this connection so far (for tests and
    /// diagnostics).
    pub fn commits(&self) -> u64 {
        self.shared.commits()
    }

    /// Whether no transaction is open.
    pub fn is_autocommit(&self) -> bool {
        self.conn.is_autocommit()
    }

    /// Starts the time limit of a request (and forgets any refusal recorded
    /// for an earlier one).
    pub fn start_deadline(&self) {
        let _ = self.shared.take_denial();
        self.shared
            .set_deadline(Instant::now().checked_add(self.limits.timeout));
    }

    /// Ends the time limit of a request.
    pub fn clear_deadline(&self) {
        self.shared.set_deadline(None);
    }

    /// Converts an error of SQLite into the protocol's, using what the
    /// authorizer and the progress handler recorded.
    pub fn error(&self, e: rusqlite::Error) -> WireError {
        if let Some(why) = self.shared.take_denial() {
            // The authorizer refused something; SQLite reports SQLITE_AUTH
            // ("not authorized") or, inside VACUUM, a plain error.
            return WireError::new(ErrorCode::Forbidden, why);
        }
        let mut w = plain_error(e);
        match w.code {
            ErrorCode::Timeout if self.shared.timed_out() => {
                w.message = format!(
                    "interrupted: the request ran past its time limit of {} ms",
                    self.limits.timeout.as_millis()
                );
            }
            ErrorCode::Timeout => w.code = ErrorCode::Misuse,
            ErrorCode::Forbidden => w.message = format!("forbidden: {}", w.message),
            ErrorCode::QuotaExceeded => {
                w.message = format!(
                    "{} (the database's size quota is {} bytes)",
                    w.message, self.limits.max_bytes
                )
            }
            _ => {}
        }
        w
    }

    /// Compiles exactly one client statement.
    pub fn prepare(&self, sql: &str) -> Result<Prepared<'_>, WireError> {
        if sql.contains('\0') {
            return Err(bad_request("the SQL text contains a NUL character"));
        }
        self.shared.begin_prepare();
        let mut stmts = rusqlite::Batch::new(&self.conn, sql);
        let first = stmts.next();
        let seen = self.shared.seen();
        let stmt = match first {
            Ok(Some(stmt)) => stmt,
            Ok(None) => {
                self.shared.end_prepare();
                return Err(bad_request("the SQL text holds no statement"));
            }
            Err(e) => {
                let err = self.error(e);
                self.shared.end_prepare();
                return Err(err);
            }
        };
        // Anything but whitespace, `;` and comments after the first statement
        // is a second statement (even one SQLite cannot compile).
        let more = !matches!(stmts.next(), Ok(None));
        self.shared.end_prepare();
        if more {
            // A refusal of the second statement is not this request's reason.
            let _ = self.shared.take_denial();
            return Err(bad_request(
                "only one SQL statement is allowed here; send several with a batch",
            ));
        }
        if seen.transaction {
            return Err(bad_request(
                "transaction control statements (BEGIN, COMMIT, ROLLBACK, END, SAVEPOINT, \
                 RELEASE) are not allowed in execute or batch; use the begin, commit and \
                 rollback operations",
            ));
        }
        Ok(Prepared {
            readonly: stmt.readonly(),
            returns_rows: stmt.column_count() > 0,
            stmt,
            seen,
        })
    }

    fn bind(p: &mut Prepared<'_>, params: &Params) -> Result<(), WireError> {
        let stmt = &mut p.stmt;
        let n = stmt.parameter_count();
        let bind_err = |e: rusqlite::Error| bad_request(format!("cannot bind parameter: {e}"));
        match params {
            Params::None if n == 0 => Ok(()),
            Params::Positional(v) if v.len() == n => {
                for (i, value) in v.iter().enumerate() {
                    stmt.raw_bind_parameter(i + 1, to_sql(value))
                        .map_err(bind_err)?;
                }
                Ok(())
            }
            Params::None | Params::Positional(_) => {
                let given = match params {
                    Params::Positional(v) => v.len(),
                    _ => 0,
                };
                Err(bad_request(format!(
                    "the statement has {n} parameter{}, but {given} {} given",
                    if n == 1 { "" } else { "s" },
                    if given == 1 { "was" } else { "were" }
                )))
            }
            Params::Named(map) => {
                let mut bound = vec![false; n];
                for (key, value) in map {
                    let index = if key.starts_with([':', '@', '$']) {
                        stmt.parameter_index(key).map_err(bind_err)?
                    } else {
                        let mut found = None;
                        for prefix in [":", "@", "$"] {
                            found = stmt
                                .parameter_index(&format!("{prefix}{key}"))
                                .map_err(bind_err)?;
                            if found.is_some() {
                                break;
                            }
                        }
                        found
                    };
                    // Keys the statement does not use are ignored, as
                    // Python's sqlite3 does.
                    if let Some(i) = index {
                        stmt.raw_bind_parameter(i, to_sql(value))
                            .map_err(bind_err)?;
                        bound[i - 1] = true;
                    }
                }
                for (i, done) in bound.iter().enumerate() {
                    if !done {
                        return Err(bad_request(match stmt.parameter_name(i + 1) {
                            Some(name) => format!("no value was given for parameter {name}"),
                            None => format!(
                                "parameter {} has no name: pass the parameters as an array",
                                i + 1
                            ),
                        }));
                    }
                }
                Ok(())
            }
        }
    }

    /// Binds and runs a compiled statement, collecting its rows within
    /// `budget`. Errors are already converted.
    pub fn run(
        &self,
        p: &mut Prepared<'_>,
        params: &Params,
        budget: &mut Budget,
        started: Instant,
    ) -> Result<QueryResult, WireError> {
        Self::bind(p, params)?;
        let columns: Vec<Column> = p
            .stmt
            .columns()
            .map(|c| Column {
                name: c.name().to_owned(),
                decl_type: c.decl_type().map(str::to_owned),
            })
            .collect();
        for c in &columns {
            budget.add_bytes(c.name.len() as u64 + 40)?;
        }
        let ncol = columns.len();
        let mut out = Vec::new();
        {
            let mut rows = p.stmt.raw_query();
            loop {
                let row = match rows.next() {
                    Ok(Some(row)) => row,
                    Ok(None) => break,
                    Err(e) => return Err(self.error(e)),
                };
                budget.add_row()?;
                let mut values = Vec::with_capacity(ncol);
                for i in 0..ncol {
                    let v = row.get_ref(i).map_err(|e| self.error(e))?;
                    budget.add_bytes(estimate(&v))?;
                    values.push(to_value(v));
                }
                out.push(values);
            }
        }
        // sqlite3_changes() is only set by INSERT, UPDATE and DELETE; after
        // any other statement it still holds an older count.
        let rows_changed = if p.is_plain_write() && !p.readonly {
            self.conn.changes()
        } else {
            0
        };
        Ok(QueryResult {
            columns,
            rows: out,
            rows_changed,
            last_insert_rowid: self.conn.last_insert_rowid(),
            elapsed_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        })
    }

    /// Runs one statement on its own. A write that returns rows runs inside
    /// a savepoint, so that when its answer is refused (TOO_LARGE) its changes
    /// are undone too, not committed behind an error.
    pub fn run_alone(
        &self,
        p: &mut Prepared<'_>,
        params: &Params,
        started: Instant,
    ) -> Result<QueryResult, WireError> {
        let mut budget = Budget::new(&self.limits);
        if !p.returns_rows || p.readonly {
            return self.run(p, params, &mut budget, started);
        }
        self.control("SAVEPOINT dbforge_returning")?;
        match self.run(p, params, &mut budget, started) {
            Ok(q) => {
                if let Err(e) = self.control("RELEASE dbforge_returning") {
                    self.undo_savepoint("dbforge_returning");
                    return Err(e);
                }
                Ok(q)
            }
            Err(e) => {
                self.undo_savepoint("dbforge_returning");
                Err(e)
            }
        }
    }

    /// Runs one of our own statements (transaction control), with no time
    /// limit: it must not be interrupted, whatever the request's deadline.
    pub fn control(&self, sql: &str) -> Result<(), WireError> {
        let saved = self.shared.suspend_deadline();
        let result = self
            .conn
            .prepare_cached(sql)
            .and_then(|mut s| s.execute([]))
            .map(drop)
            .map_err(|e| self.error(e));
        self.shared.resume_deadline(saved);
        result
    }

    /// Rolls back to and releases a savepoint, if SQLite has not already
    /// rolled back the whole transaction.
    pub fn undo_savepoint(&self, name: &str) {
        if !self.conn.is_autocommit() {
            let _ = self.control(&format!("ROLLBACK TO {name}"));
            let _ = self.control(&format!("RELEASE {name}"));
        }
    }

    /// Rolls back the open transaction, if any.
    pub fn rollback_all(&self) {
        if !self.conn.is_autocommit() {
            let _ = self.control("ROLLBACK");
        }
    }

    /// Runs a batch: all statements or none. Inside a transaction opened by
    /// `begin` it uses a savepoint, otherwise its own IMMEDIATE transaction.
    pub fn batch(&self, statements: &[Statement]) -> Result<Vec<QueryResult>, WireError> {
        let nested = !self.conn.is_autocommit();
        let undo = || {
            if nested {
                self.undo_savepoint("dbforge_batch");
            } else {
                self.rollback_all();
            }
        };
        self.control(if nested {
            "SAVEPOINT dbforge_batch"
        } else {
            "BEGIN IMMEDIATE"
        })?;
        let mut budget = Budget::new(&self.limits);
        let mut results = Vec::with_capacity(statements.len());
        for (i, st) in statements.iter().enumerate() {
            let started = Instant::now();
            let result = self
                .prepare(&st.sql)
                .and_then(|mut p| self.run(&mut p, &st.params, &mut budget, started));
            match result {
                Ok(q) => results.push(q),
                Err(mut e) => {
                    undo();
                    e.message = format!("statement {}: {}", i + 1, e.message);
                    return Err(e);
                }
            }
        }
        let end = if nested {
            "RELEASE dbforge_batch"
        } else {
            "COMMIT"
        };
        if let Err(e) = self.control(end) {
            undo();
            return Err(e);
        }
        Ok(results)
    }

    /// Describes the tables and views of the main database.
    pub fn schema(&self) -> Result<Schema, WireError> {
        let e = |e: rusqlite::Error| self.error(e);
        let mut objects: Vec<(String, String, Option<String>)> = Vec::new();
        {
            let mut st = self
                .conn
                .prepare(
                    "SELECT name, type, sql FROM main.sqlite_schema \
                     WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                     ORDER BY name",
                )
                .map_err(e)?;
            let mut rows = st.query([]).map_err(e)?;
            while let Some(r) = rows.next().map_err(e)? {
                objects.push((
                    text(r.get_ref(0).map_err(e)?),
                    text(r.get_ref(1).map_err(e)?),
                    r.get_ref(2)
                        .map_err(e)?
                        .as_str_or_null()
                        .ok()
                        .flatten()
                        .map(str::to_owned),
                ));
            }
        }
        let mut tables = Vec::with_capacity(objects.len());
        for (name, kind, sql) in objects {
            let is_view = kind == "view";
            let columns = match self.columns_of(&name) {
                Ok(c) => c,
                // A view over a dropped table cannot be described; show it
                // without columns rather than fail the whole answer.
                Err(_) if is_view && !self.shared.timed_out() => Vec::new(),
                Err(err) => return Err(err),
            };
            let (indexes, foreign_keys, row_count) = if is_view {
                (Vec::new(), Vec::new(), None)
            } else {
                let count: i64 = self
                    .conn
                    .query_row(
                        &format!("SELECT count(*) FROM main.{}", quote_ident(&name)),
                        [],
                        |r| r.get(0),
                    )
                    .map_err(e)?;
                (
                    self.indexes_of(&name)?,
                    self.foreign_keys_of(&name)?,
                    Some(count.max(0) as u64),
                )
            };
            tables.push(TableInfo {
                name,
                kind,
                sql,
                columns,
                indexes,
                foreign_keys,
                row_count,
            });
        }
        Ok(Schema { tables })
    }

    fn columns_of(&self, table: &str) -> Result<Vec<ColumnInfo>, WireError> {
        let e = |e: rusqlite::Error| self.error(e);
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT name, type, \"notnull\", dflt_value, pk \
                 FROM pragma_table_info(?1, 'main') ORDER BY cid",
            )
            .map_err(e)?;
        let mut rows = st.query([table]).map_err(e)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(e)? {
            out.push(ColumnInfo {
                name: text(r.get_ref(0).map_err(e)?),
                decl_type: text(r.get_ref(1).map_err(e)?),
                not_null: r.get::<_, i64>(2).map_err(e)? != 0,
                default: r
                    .get_ref(3)
                    .map_err(e)?
                    .as_str_or_null()
                    .ok()
                    .flatten()
                    .map(str::to_owned),
                primary_key: r.get::<_, i64>(4).map_err(e)?.clamp(0, u32::MAX as i64) as u32,
            });
        }
        Ok(out)
    }

    fn indexes_of(&self, table: &str) -> Result<Vec<IndexInfo>, WireError> {
        let e = |e: rusqlite::Error| self.error(e);
        let mut list: Vec<(String, bool, String)> = Vec::new();
        {
            let mut st = self
                .conn
                .prepare_cached(
                    "SELECT name, \"unique\", origin FROM pragma_index_list(?1, 'main') \
                     ORDER BY name",
                )
                .map_err(e)?;
            let mut rows = st.query([table]).map_err(e)?;
            while let Some(r) = rows.next().map_err(e)? {
                list.push((
                    text(r.get_ref(0).map_err(e)?),
                    r.get::<_, i64>(1).map_err(e)? != 0,
                    text(r.get_ref(2).map_err(e)?),
                ));
            }
        }
        let mut out = Vec::with_capacity(list.len());
        for (name, unique, origin) in list {
            let mut st = self
                .conn
                .prepare_cached("SELECT name FROM pragma_index_info(?1, 'main') ORDER BY seqno")
                .map_err(e)?;
            let mut rows = st.query([&name]).map_err(e)?;
            let mut columns = Vec::new();
            while let Some(r) = rows.next().map_err(e)? {
                columns.push(
                    r.get_ref(0)
                        .map_err(e)?
                        .as_str_or_null()
                        .ok()
                        .flatten()
                        .map(str::to_owned),
                );
            }
            out.push(IndexInfo {
                name,
                unique,
                origin,
                columns,
            });
        }
        Ok(out)
    }

    fn foreign_keys_of(&self, table: &str) -> Result<Vec<ForeignKeyInfo>, WireError> {
        let e = |e: rusqlite::Error| self.error(e);
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, \"from\", \"table\", \"to\", on_update, on_delete \
                 FROM pragma_foreign_key_list(?1, 'main') ORDER BY id, seq",
            )
            .map_err(e)?;
        let mut rows = st.query([table]).map_err(e)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(e)? {
            out.push(ForeignKeyInfo {
                id: r.get(0).map_err(e)?,
                from: text(r.get_ref(1).map_err(e)?),
                table: text(r.get_ref(2).map_err(e)?),
                to: r
                    .get_ref(3)
                    .map_err(e)?
                    .as_str_or_null()
                    .ok()
                    .flatten()
                    .map(str::to_owned),
                on_update: text(r.get_ref(4).map_err(e)?),
                on_delete: text(r.get_ref(5).map_err(e)?),
            });
        }
        Ok(out)
    }
}

/// Any value as text (names and the like are always text in practice).
fn text(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Null => String::new(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
    }
}

/// Converts an error without session context (code and SQLite's message).
fn plain_error(e: rusqlite::Error) -> WireError {
    match e {
        rusqlite::Error::SqliteFailure(err, msg) => WireError::new(
            code_for(err.extended_code & 0xff),
            msg.unwrap_or_else(|| err.to_string()),
        ),
        rusqlite::Error::SqlInputError { error, msg, .. } => {
            WireError::new(code_for(error.extended_code & 0xff), msg)
        }
        rusqlite::Error::InvalidParameterName(_)
        | rusqlite::Error::InvalidParameterCount(..)
        | rusqlite::Error::NulError(_)
        | rusqlite::Error::MultipleStatement => bad_request(e.to_string()),
        other => WireError::new(ErrorCode::Internal, other.to_string()),
    }
}
