//! Command line of the worker and the limits of a session.
//!
//! Parsed by hand: the binary stays small and the grammar is tiny.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// Default time limit of one request. Long enough for any reasonable
/// interactive query on a small database, short enough that a runaway query
/// (a recursive CTE without end, a cross join of big tables) cannot hold the
/// session, and the database's write lock, for long.
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;

/// Default cap on the rows of one answer. 100 000 rows is more than a person
/// reads and keeps a typical answer within a few megabytes; a client that
/// needs more pages through them with `LIMIT`/`OFFSET`.
pub const DEFAULT_MAX_ROWS: u64 = 100_000;

/// Default cap on the (estimated) encoded size of one answer: 32 MiB. Bounds
/// the worker's memory per request whatever the rows hold, and what the
/// gateway must buffer for one HTTP response.
pub const DEFAULT_MAX_ANSWER_BYTES: u64 = 32 << 20;

/// Default cap on one request line: 16 MiB. Room for a large batch or a blob
/// of several megabytes (base64 adds a third), while a client that never
/// sends a newline cannot make the worker buffer without bound.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 << 20;

/// Default time SQLite waits for a lock held by another session before it
/// answers BUSY. The same as the request time limit: a writer waits for the
/// others about as long as a request may run at all.
pub const DEFAULT_BUSY_TIMEOUT_MS: u64 = 5_000;

/// Default size quota of one database: 1 GiB. Enforced by SQLite itself
/// through `PRAGMA max_page_count`, so no statement can grow the file past it.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// Most statements committed together by one group commit. Bounds how long
/// answers are held back and how much a failing commit takes down with it,
/// while 256 fsyncs saved per commit is already most of the gain.
pub const GROUP_COMMIT_MAX_STATEMENTS: usize = 256;

/// SQLite calls the progress handler (which checks the request's deadline)
/// every this many virtual machine instructions: a few microseconds apart, so
/// a deadline is honoured within well under a millisecond, at a cost (one
/// clock read) too small to measure.
pub const PROGRESS_CHECK_OPS: i32 = 1_000;

/// Capacity of the buffer on stdin. Large, so that many pipelined requests
/// arrive with one read and the session can see that more requests are
/// already waiting (which is what group commit and delayed flushing use).
pub const STDIN_BUFFER_BYTES: usize = 1 << 20;

/// Capacity of the buffer on stdout. Answers are written out when the input
/// runs dry; a larger batch of answers than this goes out in several writes.
pub const STDOUT_BUFFER_BYTES: usize = 256 << 10;

/// Largest string or blob SQLite may build (`SQLITE_LIMIT_LENGTH`): 64 MiB.
/// Twice the largest answer and four times the largest request, so no value a
/// client can store or read is refused, while `randomblob(1e9)` fails with
/// TOO_BIG instead of allocating a gigabyte.
pub const MAX_VALUE_BYTES: i32 = 64 << 20;

/// SQLite's `synchronous` setting for the session's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// fsync on every commit: a committed transaction survives a power cut.
    #[default]
    Full,
    /// fsync only at checkpoints (WAL): survives a crash of the process, may
    /// lose the last commits on a power cut. Much faster for small writes.
    Normal,
}

impl Synchronous {
    /// The value for `PRAGMA synchronous`.
    pub fn as_pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// Every limit of a session, with the defaults above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Time limit of one request (`--timeout-ms`).
    pub timeout: Duration,
    /// Rows in one answer (`--max-rows`).
    pub max_rows: u64,
    /// Estimated encoded bytes of one answer (`--max-answer-bytes`).
    pub max_answer_bytes: u64,
    /// Bytes of one request line (`--max-line-bytes`).
    pub max_line_bytes: usize,
    /// How long SQLite waits for another session's lock (`--busy-timeout-ms`).
    pub busy_timeout: Duration,
    /// Size quota of the database file (`--max-bytes`).
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            max_rows: DEFAULT_MAX_ROWS,
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            busy_timeout: Duration::from_millis(DEFAULT_BUSY_TIMEOUT_MS),
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// Everything a session needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// The database file (`--db`, required).
    pub db: PathBuf,
    /// `--synchronous full|normal`.
    pub synchronous: Synchronous,
    /// The limits.
    pub limits: Limits,
}

impl SessionConfig {
    /// A configuration with every default, for the database at `db`.
    pub fn new(db: impl Into<PathBuf>) -> Self {
        SessionConfig {
            db: db.into(),
            synchronous: Synchronous::default(),
            limits: Limits::default(),
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Wait for SIGTERM/SIGINT (the container's main process).
    Idle,
    /// Serve one protocol session on stdin/stdout.
    Session(SessionConfig),
    /// Print the usage.
    Help,
}

/// The usage text.
pub const USAGE: &str = "\
usage: dbforge-worker [idle]
       dbforge-worker session --db PATH [--synchronous full|normal] [--max-bytes N]
                      [--timeout-ms N] [--max-rows N] [--max-answer-bytes N]
                      [--max-line-bytes N] [--busy-timeout-ms N]

  idle     wait until SIGTERM or SIGINT, then exit 0 (the container's main process)
  session  speak the DB-Forge protocol on stdin/stdout (one `docker exec -i` each)

  defaults: --synchronous full, --max-bytes 1073741824, --timeout-ms 5000,
            --max-rows 100000, --max-answer-bytes 33554432,
            --max-line-bytes 16777216, --busy-timeout-ms 5000";

/// Parses the arguments after the program name.
pub fn parse_args<I, S>(args: I) -> Result<Command, String>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let mut args = args.into_iter().map(Into::into);
    let Some(first) = args.next() else {
        return Ok(Command::Idle);
    };
    match first.to_str() {
        Some("idle") => match args.next() {
            None => Ok(Command::Idle),
            Some(extra) => Err(format!("idle takes no arguments, got {extra:?}")),
        },
        Some("session") => parse_session(args).map(Command::Session),
        Some("-h" | "--help" | "help") => Ok(Command::Help),
        _ => Err(format!("unknown command {first:?}")),
    }
}

fn parse_session(mut args: impl Iterator<Item = OsString>) -> Result<SessionConfig, String> {
    let mut db: Option<PathBuf> = None;
    let mut synchronous = Synchronous::default();
    let mut limits = Limits::default();
    while let Some(arg) = args.next() {
        // `--flag value` and `--flag=value` are both accepted.
        let (flag, inline): (String, Option<OsString>) = match arg.to_str() {
            Some(s) if s.starts_with("--") => match s.split_once('=') {
                Some((f, v)) => (f.to_owned(), Some(OsString::from(v))),
                None => (s.to_owned(), None),
            },
            _ => return Err(format!("unexpected argument {arg:?}")),
        };
        let mut value = || -> Result<OsString, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--db" => {
                let v = value()?;
                if v.is_empty() {
                    return Err("--db must not be empty".into());
                }
                db = Some(PathBuf::from(v));
            }
            "--synchronous" => {
                synchronous = match value()?.to_str().map(str::to_ascii_lowercase).as_deref() {
                    Some("full") => Synchronous::Full,
                    Some("normal") => Synchronous::Normal,
                    _ => return Err("--synchronous must be full or normal".into()),
                }
            }
            "--max-bytes" => limits.max_bytes = number(&flag, value()?, 1)?,
            "--timeout-ms" => limits.timeout = Duration::from_millis(number(&flag, value()?, 1)?),
            "--max-rows" => limits.max_rows = number(&flag, value()?, 1)?,
            "--max-answer-bytes" => limits.max_answer_bytes = number(&flag, value()?, 1)?,
            "--max-line-bytes" => {
                limits.max_line_bytes = usize::try_from(number(&flag, value()?, 1)?)
                    .map_err(|_| format!("{flag} is too large"))?
            }
            "--busy-timeout-ms" => {
                limits.busy_timeout = Duration::from_millis(number(&flag, value()?, 0)?)
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let db = db.ok_or("session needs --db PATH")?;
    Ok(SessionConfig {
        db,
        synchronous,
        limits,
    })
}

fn number(flag: &str, v: OsString, min: u64) -> Result<u64, String> {
    let n: u64 = v
        .to_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{flag} needs a whole number, got {v:?}"))?;
    if n < min {
        return Err(format!("{flag} must be at least {min}"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().copied())
    }

    #[test]
    fn idle_is_the_default() {
        assert_eq!(parse(&[]), Ok(Command::Idle));
        assert_eq!(parse(&["idle"]), Ok(Command::Idle));
        assert!(parse(&["idle", "x"]).is_err());
    }

    #[test]
    fn session_defaults() {
        let Ok(Command::Session(c)) = parse(&["session", "--db", "/data/db.sqlite3"]) else {
            panic!()
        };
        assert_eq!(c, SessionConfig::new("/data/db.sqlite3"));
        assert_eq!(c.limits.timeout, Duration::from_millis(5000));
        assert_eq!(c.limits.max_rows, 100_000);
        assert_eq!(c.limits.max_answer_bytes, 32 << 20);
        assert_eq!(c.limits.max_line_bytes, 16 << 20);
        assert_eq!(c.limits.busy_timeout, Duration::from_millis(5000));
        assert_eq!(c.limits.max_bytes, 1 << 30);
        assert_eq!(c.synchronous, Synchronous::Full);
    }

    #[test]
    fn session_every_flag() {
        let Ok(Command::Session(c)) = parse(&[
            "session",
            "--db=/x",
            "--synchronous",
            "NORMAL",
            "--max-bytes",
            "65536",
            "--timeout-ms=100",
            "--max-rows",
            "7",
            "--max-answer-bytes",
            "1000",
            "--max-line-bytes",
            "2000",
            "--busy-timeout-ms",
            "0",
        ]) else {
            panic!()
        };
        assert_eq!(c.db, PathBuf::from("/x"));
        assert_eq!(c.synchronous, Synchronous::Normal);
        assert_eq!(
            c.limits,
            Limits {
                timeout: Duration::from_millis(100),
                max_rows: 7,
                max_answer_bytes: 1000,
                max_line_bytes: 2000,
                busy_timeout: Duration::ZERO,
                max_bytes: 65536,
            }
        );
    }

    #[test]
    fn bad_arguments_are_refused() {
        for bad in [
            &["session"][..],
            &["session", "--db"],
            &["session", "--db", ""],
            &["session", "--db", "x", "--timeout-ms", "0"],
            &["session", "--db", "x", "--max-rows", "-1"],
            &["session", "--db", "x", "--max-rows", "ten"],
            &["session", "--db", "x", "--synchronous", "off"],
            &["session", "--db", "x", "--frobnicate", "1"],
            &["session", "--db", "x", "stray"],
            &["serve"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse(&["--help"]), Ok(Command::Help));
    }
}
