//! The gateway's one configuration struct, read once at start-up from flags,
//! each of which also reads an environment variable (`DBFORGE_*`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// How a database's commits reach the disk (SQLite's `synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync on every commit: an answered write survives power loss.
    Full,
    /// fsync at WAL checkpoints: an answered write survives a crash of the
    /// process or container, but may be lost on power loss.
    Normal,
}

impl Synchronous {
    /// The word used in labels and in the worker's command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Synchronous::Full => "full",
            Synchronous::Normal => "normal",
        }
    }

    /// Parses the word back.
    pub fn parse(s: &str) -> Option<Synchronous> {
        match s {
            "full" => Some(Synchronous::Full),
            "normal" => Some(Synchronous::Normal),
            _ => None,
        }
    }
}

/// Everything the gateway can be told. Each field is a flag and an
/// environment variable; defaults are chosen for one host with a few hundred
/// small databases.
#[derive(Debug, Clone, Parser)]
#[command(name = "dbforge-gateway", version, about = "DB-Forge's REST gateway")]
pub struct Config {
    /// Address to listen on for HTTP.
    #[arg(long, env = "DBFORGE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Prefix of every Docker object this gateway owns, and the value of its
    /// `dbforge.namespace` label. Lowercase letters and digits only, so that
    /// `<namespace>-<database>` can never be the name of another
    /// namespace's object. Two gateways with different namespaces share a
    /// Docker host without seeing each other's databases.
    #[arg(long, env = "DBFORGE_NAMESPACE", default_value = "dbforge", value_parser = parse_namespace)]
    pub namespace: String,

    /// Docker endpoint (`unix:///path/to/docker.sock`, `tcp://host:port`);
    /// unset means Docker's own defaults (`DOCKER_HOST`, else the local socket).
    #[arg(long, env = "DBFORGE_DOCKER_HOST")]
    pub docker_host: Option<String>,

    /// Image of the database containers (holds the static worker binary).
    #[arg(
        long,
        env = "DBFORGE_WORKER_IMAGE",
        default_value = "db-worker-base:latest"
    )]
    pub worker_image: String,

    /// Extra labels (`key=value`, comma-separated) put on every container and
    /// volume created, e.g. to mark a test run for clean-up.
    #[arg(long, env = "DBFORGE_LABELS", value_delimiter = ',', value_parser = parse_label)]
    pub labels: Vec<(String, String)>,

    /// Exec sessions per database at most. A session is filled (up to
    /// `inflight_per_session` requests) before the next is opened: one busy
    /// pipe carries many requests per write, which the exec relay is cheap
    /// at (see BENCHMARKS.md); the second serves bursts beyond that.
    #[arg(long, env = "DBFORGE_SESSIONS_PER_DB", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub sessions_per_db: u16,

    /// Requests in flight on one session at most (its pipelining depth).
    #[arg(long, env = "DBFORGE_INFLIGHT_PER_SESSION", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub inflight_per_session: u16,

    /// Data-plane requests in flight across all databases at most; past it
    /// the answer is 503 with Retry-After. The whole host shares one exec
    /// capacity (dockerd and the shims), so this bounds queueing there.
    #[arg(long, env = "DBFORGE_MAX_INFLIGHT", default_value_t = 2048)]
    pub max_inflight: usize,

    /// How long a request may wait for a free slot on its database's
    /// sessions (including opening a session) before a 503.
    #[arg(long, env = "DBFORGE_POOL_WAIT_MS", default_value_t = 5000)]
    pub pool_wait_ms: u64,

    /// Time limit of one statement (or batch) inside the worker.
    #[arg(long, env = "DBFORGE_STATEMENT_TIMEOUT_MS", default_value_t = 5000)]
    pub statement_timeout_ms: u64,

    /// How long an interactive transaction may sit idle between requests
    /// before it is rolled back: it holds the database's write lock (and a
    /// session) meanwhile.
    #[arg(long, env = "DBFORGE_TX_IDLE_TIMEOUT_MS", default_value_t = 30_000)]
    pub tx_idle_timeout_ms: u64,

    /// Interactive transactions open at once per database at most; each
    /// pins a session (a worker process) of its own.
    #[arg(long, env = "DBFORGE_MAX_TX_PER_DB", default_value_t = 8)]
    pub max_tx_per_db: usize,

    /// Largest request body accepted, in bytes; more is a 413, refused
    /// before the body is read whole.
    #[arg(long, env = "DBFORGE_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Most rows one answer may carry.
    #[arg(long, env = "DBFORGE_MAX_ROWS", default_value_t = 100_000)]
    pub max_rows: u64,

    /// Most bytes one answer may carry (estimated inside the worker).
    #[arg(long, env = "DBFORGE_MAX_ANSWER_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_answer_bytes: u64,

    /// Size quota of a new database, in bytes, unless its spawn says otherwise.
    #[arg(long, env = "DBFORGE_DEFAULT_MAX_DB_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub default_max_db_bytes: u64,

    /// Durability of a new database unless its spawn says otherwise.
    #[arg(long, env = "DBFORGE_DEFAULT_SYNCHRONOUS", value_enum, default_value_t = Synchronous::Full)]
    pub default_synchronous: Synchronous,

    /// Memory limit of each database container, in MiB. An idle database
    /// uses well under 1 MiB; each exec session holds SQLite's page cache
    /// (about 2 MiB) plus answers being built.
    #[arg(long, env = "DBFORGE_CONTAINER_MEMORY_MB", default_value_t = 256)]
    pub container_memory_mb: u64,

    /// Process limit of each database container: the idle main process plus
    /// one per session, with room for sessions being replaced.
    #[arg(long, env = "DBFORGE_CONTAINER_PIDS", default_value_t = 64)]
    pub container_pids: i64,

    /// CPU limit of each database container, in CPUs, so one tenant cannot
    /// take the whole host.
    #[arg(long, env = "DBFORGE_CONTAINER_CPUS", default_value_t = 1.0)]
    pub container_cpus: f64,

    /// How long SIGTERM waits for in-flight requests before exiting anyway.
    #[arg(long, env = "DBFORGE_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,

    /// Log as JSON lines instead of text.
    #[arg(long, env = "DBFORGE_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
}

/// Extra time the gateway waits for an answer beyond the statement timeout
/// and the worker's busy timeout (a statement may first wait that long for
/// another session's lock), before it declares the session stuck.
pub const ANSWER_GRACE: Duration = Duration::from_secs(5);

/// The worker's busy timeout (its default, `--busy-timeout-ms`): how long a
/// statement waits for another session's write lock.
pub const WORKER_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest line the worker accepts; a request body fits with room to spare
/// (a body of `max_body_bytes` can grow when re-encoded, e.g. escapes).
pub const WORKER_MAX_LINE_FACTOR: usize = 2;

impl Config {
    /// Parses flags and environment; exits with usage on error.
    pub fn from_env_and_args() -> Config {
        Config::parse()
    }

    /// How long a worker may go without answering while requests wait.
    pub fn answer_deadline(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms) + WORKER_BUSY_TIMEOUT + ANSWER_GRACE
    }

    /// Longest request line the worker accepts.
    pub fn max_line_bytes(&self) -> usize {
        self.max_body_bytes * WORKER_MAX_LINE_FACTOR
    }

    /// Deadline for getting a session slot.
    pub fn pool_wait(&self) -> Duration {
        Duration::from_millis(self.pool_wait_ms)
    }
}

fn parse_namespace(s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.len() <= 24
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        Ok(s.to_owned())
    } else {
        Err("the namespace must be 1 to 24 characters from [a-z0-9]".into())
    }
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.starts_with("dbforge.") || k == "dbforge.test-run" => {
            Ok((k.to_owned(), v.to_owned()))
        }
        Some(_) => Err(format!(
            "label {s:?}: keys under dbforge. are the gateway's own"
        )),
        None => Err(format!("label {s:?} is not key=value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let c = Config::try_parse_from(["gw"]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.namespace, "dbforge");
        assert_eq!(c.default_synchronous, Synchronous::Full);
        assert!(c.labels.is_empty());
    }

    #[test]
    fn flags_override() {
        let c = Config::try_parse_from([
            "gw",
            "--namespace",
            "t123",
            "--labels",
            "a=b,dbforge.test-run=x",
            "--default-synchronous",
            "normal",
        ])
        .unwrap();
        assert_eq!(c.namespace, "t123");
        assert_eq!(
            c.labels,
            vec![
                ("a".into(), "b".into()),
                ("dbforge.test-run".into(), "x".into())
            ]
        );
        assert_eq!(c.default_synchronous, Synchronous::Normal);
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            ["gw", "--namespace", "Has-Dash"],
            ["gw", "--labels", "dbforge.db=x"],
            ["gw", "--labels", "novalue"],
            ["gw", "--sessions-per-db", "0"],
        ] {
            assert!(Config::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
