//! The session loop: requests in, answers out, with group commit.
//!
//! Answers are written to a buffer that is flushed only when no complete
//! request line is waiting in the input buffer: a client that pipelines gets
//! its answers in few large writes, a client that waits for each answer gets
//! it at once.
//!
//! Group commit: with `synchronous=FULL` every commit costs an fsync. When a
//! write arrives outside a `begin` transaction and another request line is
//! already buffered, the session opens one IMMEDIATE transaction and runs the
//! following pipelined `execute` requests in it, each inside its own
//! savepoint (so a failing statement fails alone). The group is committed
//! when the next request cannot join it (not an `execute` of a plain write or
//! read), when no complete line is buffered, or after
//! [`GROUP_COMMIT_MAX_STATEMENTS`]. The group's answers are held back until
//! COMMIT succeeded; if it fails, or SQLite rolled the transaction back,
//! every answer that would have been a success becomes a BUSY error.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::time::Instant;

use dbforge_protocol::{
    to_line, BeginMode, ErrorCode, Hello, Op, Outcome, Payload, Request, Response, Statement,
    WireError, PROTOCOL_VERSION,
};

use crate::config::{
    Limits, SessionConfig, GROUP_COMMIT_MAX_STATEMENTS, STDIN_BUFFER_BYTES, STDOUT_BUFFER_BYTES,
};
use crate::db::{bad_request, Budget, Db};
use crate::lines::{LineRead, LineReader};

/// Above this capacity, the line buffer is given back after use.
const KEEP_LINE_BUFFER_BYTES: usize = 4 << 20;

/// Statements committed together, with their answers held back.
#[derive(Debug, Default)]
struct Group {
    held: Vec<Response>,
    held_bytes: u64,
}

/// One protocol session on one connection.
pub struct Session {
    db: Result<Db, WireError>,
    limits: Limits,
    /// A transaction opened by `begin` is open.
    in_transaction: bool,
    group: Option<Group>,
    scratch: Vec<u8>,
}

/// Serves a session on the process's stdin and stdout.
pub fn run_stdio(cfg: &SessionConfig) -> io::Result<()> {
    // Own handles on fds 0 and 1, without std's own buffering around them.
    let stdin = File::from(io::stdin().as_fd().try_clone_to_owned()?);
    let stdout = File::from(io::stdout().as_fd().try_clone_to_owned()?);
    Session::open(cfg).serve(stdin, stdout)
}

impl Session {
    /// Opens the database. A failure is not fatal: the session still says
    /// hello and answers every request with the error, so the client learns
    /// why.
    pub fn open(cfg: &SessionConfig) -> Session {
        let db = Db::open(cfg);
        if let Err(e) = &db {
            eprintln!("dbforge-worker: {e}");
        }
        Session {
            db,
            limits: cfg.limits.clone(),
            in_transaction: false,
            group: None,
            scratch: Vec::new(),
        }
    }

    /// Transactions committed so far (0 if the database did not open).
    pub fn commits(&self) -> u64 {
        self.db.as_ref().map_or(0, Db::commits)
    }

    /// Writes the hello, then answers every request line of `input` until its
    /// end. Returns early only on an I/O error.
    pub fn serve<R: Read, W: Write>(&mut self, input: R, output: W) -> io::Result<()> {
        let mut reader = LineReader::new(input, STDIN_BUFFER_BYTES, self.limits.max_line_bytes);
        let mut out = BufWriter::with_capacity(STDOUT_BUFFER_BYTES, output);
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            sqlite_version: rusqlite::version().to_owned(),
            worker_version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        self.scratch.clear();
        to_line(&hello, &mut self.scratch);
        out.write_all(&self.scratch)?;
        out.flush()?;

        let mut line = Vec::new();
        loop {
            match reader.read_line(&mut line)? {
                LineRead::Eof => break,
                LineRead::TooLong => {
                    let resp = Response {
                        id: None,
                        outcome: Outcome::Error(bad_request(format!(
                            "the request line is longer than {} bytes",
                            self.limits.max_line_bytes
                        ))),
                    };
                    self.answer_alone(resp, &mut out)?;
                }
                LineRead::Line => match parse_request(&line) {
                    Ok(req) => {
                        let more = reader.has_complete_line();
                        self.handle(req, more, &mut out)?;
                    }
                    Err(resp) => self.answer_alone(resp, &mut out)?,
                },
            }
            if line.capacity() > KEEP_LINE_BUFFER_BYTES {
                line = Vec::new();
            }
            if !reader.has_complete_line() {
                // The input ran dry: commit what is pending and let the
                // client have its answers.
                self.finish_group(&mut out)?;
                out.flush()?;
            }
        }
        self.finish_group(&mut out)?;
        if self.in_transaction {
            if let Ok(db) = &self.db {
                // The client left without committing.
                db.rollback_all();
            }
            self.in_transaction = false;
        }
        out.flush()
    }

    fn emit<W: Write>(scratch: &mut Vec<u8>, out: &mut W, resp: &Response) -> io::Result<()> {
        scratch.clear();
        to_line(resp, scratch);
        out.write_all(scratch)
    }

    /// Answers a request that takes no part in a group: commits the pending
    /// group first, so that answers stay in request order.
    fn answer_alone<W: Write>(&mut self, resp: Response, out: &mut W) -> io::Result<()> {
        self.finish_group(out)?;
        Self::emit(&mut self.scratch, out, &resp)
    }

    /// Commits the pending group, if any, and writes its held answers.
    fn finish_group<W: Write>(&mut self, out: &mut W) -> io::Result<()> {
        let group = self.group.take();
        match &self.db {
            Ok(db) => Self::commit_group(db, &mut self.scratch, out, group),
            Err(_) => Ok(()),
        }
    }

    /// Writes held answers; after a failed group, successes become errors.
    fn release<W: Write>(
        scratch: &mut Vec<u8>,
        out: &mut W,
        group: Group,
        failure: Option<&str>,
    ) -> io::Result<()> {
        let n = group.held.len();
        for mut resp in group.held {
            if let (Some(why), Outcome::Ok(_)) = (failure, &resp.outcome) {
                resp.outcome = Outcome::Error(WireError::new(
                    ErrorCode::Busy,
                    format!(
                        "not committed: the request ran in a group commit of {n} pipelined \
                         requests that was rolled back ({why}); retry it"
                    ),
                ));
            }
            Self::emit(scratch, out, &resp)?;
        }
        Ok(())
    }

    fn handle<W: Write>(&mut self, req: Request, more: bool, out: &mut W) -> io::Result<()> {
        let Request { id, op } = req;
        if let Err(e) = &self.db {
            let resp = Response {
                id: Some(id),
                outcome: Outcome::Error(e.clone()),
            };
            return self.answer_alone(resp, out);
        }
        if let Op::Execute(st) = &op {
            if !self.in_transaction {
                return self.execute_outside(id, st, more, out);
            }
        }
        self.finish_group(out)?;
        let outcome = self.dispatch(op);
        Self::emit(
            &mut self.scratch,
            out,
            &Response {
                id: Some(id),
                outcome,
            },
        )
    }

    /// Every request but an `execute` outside a `begin` transaction.
    fn dispatch(&mut self, op: Op) -> Outcome {
        let Ok(db) = &self.db else {
            return Outcome::Error(WireError::new(ErrorCode::Internal, "no database"));
        };
        let was_open = self.in_transaction;
        db.start_deadline();
        let result: Result<Payload, WireError> = match op {
            Op::Execute(st) => {
                let started = Instant::now();
                db.prepare(&st.sql)
                    .and_then(|mut p| db.run_alone(&mut p, &st.params, started))
                    .map(Payload::Query)
            }
            Op::Batch { statements } => db.batch(&statements).map(Payload::Batch),
            Op::Begin { mode } => {
                if self.in_transaction {
                    Err(bad_request(
                        "a transaction is already open; commit or roll it back first",
                    ))
                } else {
                    let sql = match mode {
                        BeginMode::Immediate => "BEGIN IMMEDIATE",
                        BeginMode::Deferred => "BEGIN DEFERRED",
                        BeginMode::Exclusive => "BEGIN EXCLUSIVE",
                    };
                    db.control(sql).map(|()| {
                        self.in_transaction = true;
                        Payload::Transaction {
                            in_transaction: true,
                        }
                    })
                }
            }
            Op::Commit | Op::Rollback if !self.in_transaction => {
                Err(bad_request("no transaction is open (begin opens one)"))
            }
            Op::Commit => db.control("COMMIT").map(|()| {
                self.in_transaction = false;
                Payload::Transaction {
                    in_transaction: false,
                }
            }),
            Op::Rollback => {
                db.rollback_all();
                self.in_transaction = false;
                Ok(Payload::Transaction {
                    in_transaction: false,
                })
            }
            Op::Schema => db.schema().map(Payload::Schema),
            Op::Ping => Ok(Payload::Pong),
        };
        db.clear_deadline();
        match result {
            Ok(payload) => Outcome::Ok(payload),
            Err(mut e) => {
                if was_open && self.in_transaction && db.is_autocommit() {
                    // SQLite rolled the whole transaction back (an interrupted
                    // write, a full disk, ...): say so, and forget it.
                    self.in_transaction = false;
                    e.message.push_str(
                        "; SQLite rolled back the open transaction, so nothing since begin \
                         was applied",
                    );
                }
                Outcome::Error(e)
            }
        }
    }

    /// An `execute` outside a `begin` transaction: alone, or in a group.
    fn execute_outside<W: Write>(
        &mut self,
        id: u64,
        st: &Statement,
        more: bool,
        out: &mut W,
    ) -> io::Result<()> {
        let Ok(db) = &self.db else {
            return Ok(());
        };
        let started = Instant::now();
        db.start_deadline();
        let mut p = match db.prepare(&st.sql) {
            Ok(p) => p,
            Err(e) => {
                db.clear_deadline();
                let resp = Response {
                    id: Some(id),
                    outcome: Outcome::Error(e),
                };
                // A statement that did not compile changed nothing: if a
                // group is open, its answer just takes its turn there.
                if let Some(group) = self.group.as_mut() {
                    group.held.push(resp);
                    return Ok(());
                }
                return Self::emit(&mut self.scratch, out, &resp);
            }
        };
        let write = p.is_plain_write();
        let joins = write || p.is_plain_read();
        if self.group.is_none() && write && more {
            if let Err(e) = db.control("BEGIN IMMEDIATE") {
                db.clear_deadline();
                drop(p);
                let resp = Response {
                    id: Some(id),
                    outcome: Outcome::Error(e),
                };
                return Self::emit(&mut self.scratch, out, &resp);
            }
            self.group = Some(Group::default());
        }
        if self.group.is_none() || !joins {
            let group = self.group.take();
            Self::commit_group(db, &mut self.scratch, out, group)?;
            let result = db.run_alone(&mut p, &st.params, started);
            db.clear_deadline();
            drop(p);
            let resp = Response {
                id: Some(id),
                outcome: result.map_or_else(Outcome::Error, |q| Outcome::Ok(Payload::Query(q))),
            };
            return Self::emit(&mut self.scratch, out, &resp);
        }

        // In the group.
        let mut budget = Budget::new(db.limits());
        let result = if write {
            db.control("SAVEPOINT dbforge_stmt").and_then(|()| {
                match db.run(&mut p, &st.params, &mut budget, started) {
                    Ok(q) => db.control("RELEASE dbforge_stmt").map(|()| q),
                    Err(e) => {
                        db.undo_savepoint("dbforge_stmt");
                        Err(e)
                    }
                }
            })
        } else {
            db.run(&mut p, &st.params, &mut budget, started)
        };
        db.clear_deadline();
        drop(p);
        let mut resp = Response {
            id: Some(id),
            outcome: result.map_or_else(Outcome::Error, |q| Outcome::Ok(Payload::Query(q))),
        };
        let Some(group) = self.group.as_mut() else {
            return Ok(());
        };
        if db.is_autocommit() {
            // SQLite rolled back the whole transaction (an interrupted write,
            // a full disk, an I/O error): nothing of the group was committed.
            let group = self.group.take().unwrap_or_default();
            Self::release(
                &mut self.scratch,
                out,
                group,
                Some("SQLite rolled back the transaction after an error in a later request"),
            )?;
            if let Outcome::Ok(_) = resp.outcome {
                resp.outcome = Outcome::Error(WireError::new(
                    ErrorCode::Busy,
                    "not committed: SQLite rolled back the group's transaction; retry it",
                ));
            }
            return Self::emit(&mut self.scratch, out, &resp);
        }
        group.held.push(resp);
        group.held_bytes = group.held_bytes.saturating_add(budget.bytes());
        if group.held.len() >= GROUP_COMMIT_MAX_STATEMENTS
            || group.held_bytes > self.limits.max_answer_bytes
        {
            let group = self.group.take();
            Self::commit_group(db, &mut self.scratch, out, group)?;
        }
        Ok(())
    }

    /// Commits `group` (unless SQLite already rolled it back) and writes its
    /// answers: the real ones after a successful COMMIT, errors otherwise.
    fn commit_group<W: Write>(
        db: &Db,
        scratch: &mut Vec<u8>,
        out: &mut W,
        group: Option<Group>,
    ) -> io::Result<()> {
        let Some(group) = group else {
            return Ok(());
        };
        let failure = if db.is_autocommit() {
            Some("SQLite rolled back the transaction".to_owned())
        } else {
            match db.control("COMMIT") {
                Ok(()) => None,
                Err(e) => {
                    db.rollback_all();
                    Some(format!("COMMIT failed: {}", e.message))
                }
            }
        };
        Self::release(scratch, out, group, failure.as_deref())
    }
}

/// Parses a request line; a broken one becomes its BAD_REQUEST answer, with
/// the id if one can be found.
pub fn parse_request(line: &[u8]) -> Result<Request, Response> {
    match serde_json::from_slice::<Request>(line) {
        Ok(req) => Ok(req),
        Err(e) => {
            let (id, message) = match std::str::from_utf8(line) {
                Ok(text) => (recover_id(text), format!("malformed request: {e}")),
                Err(_) => (
                    recover_id(&String::from_utf8_lossy(line)),
                    "malformed request: the line is not valid UTF-8".to_owned(),
                ),
            };
            Err(Response {
                id,
                outcome: Outcome::Error(bad_request(message)),
            })
        }
    }
}

/// The integer `id` of a JSON object, if the text is one and has it.
fn recover_id(text: &str) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    value.get("id")?.as_u64()
}
