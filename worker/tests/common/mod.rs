//! Helpers for driving a session in memory.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use dbforge_protocol::{
    ErrorCode, Hello, Op, Outcome, Params, Payload, QueryResult, Request, Response, Statement,
    Value,
};
use dbforge_worker::{Session, SessionConfig};

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "dbforge-worker-test-{}-{}-{}",
            tag,
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn db(&self) -> PathBuf {
        self.0.join("db.sqlite3")
    }

    pub fn config(&self) -> SessionConfig {
        SessionConfig::new(self.db())
    }

    /// The names of the files in the directory.
    pub fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Hands out its input one piece per `read` call, as a pipe does when the
/// peer writes piece by piece (so no second line is ever buffered).
pub struct Pieces {
    pieces: Vec<Vec<u8>>,
    next: usize,
    offset: usize,
}

impl Pieces {
    pub fn new(pieces: Vec<Vec<u8>>) -> Self {
        Pieces {
            pieces,
            next: 0,
            offset: 0,
        }
    }
}

impl Read for Pieces {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.next < self.pieces.len() {
            let piece = &self.pieces[self.next];
            if self.offset < piece.len() {
                let n = (piece.len() - self.offset).min(out.len());
                out[..n].copy_from_slice(&piece[self.offset..self.offset + n]);
                self.offset += n;
                return Ok(n);
            }
            self.next += 1;
            self.offset = 0;
        }
        Ok(0)
    }
}

/// A writer that counts flushes.
#[derive(Default)]
pub struct Counting {
    pub bytes: Vec<u8>,
    pub flushes: usize,
}

impl Write for &mut Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.flushes += 1;
        Ok(())
    }
}

pub fn line(req: &Request) -> Vec<u8> {
    let mut v = Vec::new();
    dbforge_protocol::to_line(req, &mut v);
    v
}

/// Parses the output: hello, then answers.
pub fn parse_output(out: &[u8]) -> (Hello, Vec<Response>) {
    let text = std::str::from_utf8(out).expect("output is UTF-8");
    assert!(
        text.ends_with('\n') || text.is_empty(),
        "output ends with a newline"
    );
    let mut lines = text.lines();
    let hello: Hello = serde_json::from_str(lines.next().expect("a hello")).unwrap();
    let answers = lines
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad answer {l}: {e}")))
        .collect();
    (hello, answers)
}

/// Runs raw input through a new session on `cfg`; returns the answers.
pub fn run_raw(cfg: &SessionConfig, input: Vec<Vec<u8>>) -> Vec<Response> {
    let mut session = Session::open(cfg);
    let mut out = Counting::default();
    session.serve(Pieces::new(input), &mut out).unwrap();
    parse_output(&out.bytes).1
}

/// Sends `ops` (ids 1, 2, ...) all at once (pipelined) or one per read, and
/// returns the outcomes in order, checking the ids. Also returns the session's
/// commit count.
pub fn run_ops_counting(cfg: &SessionConfig, ops: Vec<Op>, pipelined: bool) -> (Vec<Outcome>, u64) {
    let n = ops.len();
    let lines: Vec<Vec<u8>> = ops
        .into_iter()
        .enumerate()
        .map(|(i, op)| {
            line(&Request {
                id: i as u64 + 1,
                op,
            })
        })
        .collect();
    let input = if pipelined {
        vec![lines.concat()]
    } else {
        lines
    };
    let mut session = Session::open(cfg);
    let mut out = Counting::default();
    session.serve(Pieces::new(input), &mut out).unwrap();
    let (_, answers) = parse_output(&out.bytes);
    assert_eq!(answers.len(), n, "one answer per request");
    let outcomes = answers
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            assert_eq!(a.id, Some(i as u64 + 1), "answers in request order");
            a.outcome
        })
        .collect();
    (outcomes, session.commits())
}

/// [`run_ops_counting`], one request per read (no pipelining).
pub fn run_ops(cfg: &SessionConfig, ops: Vec<Op>) -> Vec<Outcome> {
    run_ops_counting(cfg, ops, false).0
}

pub fn exec(sql: &str) -> Op {
    Op::Execute(Statement::new(sql))
}

pub fn exec_p(sql: &str, params: Vec<Value>) -> Op {
    Op::Execute(Statement {
        sql: sql.into(),
        params: Params::Positional(params),
    })
}

pub fn query(o: &Outcome) -> &QueryResult {
    match o {
        Outcome::Ok(Payload::Query(q)) => q,
        other => panic!("expected a query result, got {other:?}"),
    }
}

pub fn err(o: &Outcome) -> (ErrorCode, &str) {
    match o {
        Outcome::Error(e) => (e.code, e.message.as_str()),
        other => panic!("expected an error, got {other:?}"),
    }
}

pub fn is_ok(o: &Outcome) -> bool {
    matches!(o, Outcome::Ok(_))
}

/// Runs one query in a fresh session and returns its rows.
pub fn rows(cfg: &SessionConfig, sql: &str) -> Vec<Vec<Value>> {
    let out = run_ops(cfg, vec![exec(sql)]);
    query(&out[0]).rows.clone()
}
