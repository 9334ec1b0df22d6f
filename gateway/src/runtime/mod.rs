//! The runtime seam: where a database's home lives and how a session into it
//! is opened. [`DockerRuntime`] is the real one (a container and a named
//! volume per database, sessions by `docker exec`); a runtime without Docker
//! or on Kubernetes implements the same trait.

use std::io;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use tokio::io::AsyncWrite;

use crate::config::Synchronous;
use crate::names::DbName;

mod docker;

pub use docker::DockerRuntime;

/// Per-database settings, chosen at spawn and kept with the database's home
/// (so a pruned database wakes with the same ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbSettings {
    /// Durability of commits.
    pub synchronous: Synchronous,
    /// Size quota of the database file, in bytes.
    pub max_bytes: u64,
}

/// What the runtime knows of one database.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The database's name.
    pub name: DbName,
    /// Its settings, from its home's labels.
    pub settings: DbSettings,
    /// When its home was created (RFC 3339), if the runtime says.
    pub created: Option<String>,
    /// Its container, if it has one (a pruned database has none).
    pub container: Option<Container>,
}

/// A database's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// The runtime's id of it.
    pub id: String,
    /// Its state as Docker words it: `running`, `exited`, `created`, ...
    pub state: String,
}

impl Container {
    /// Whether sessions can be opened into it.
    pub fn is_running(&self) -> bool {
        self.state == "running"
    }
}

/// How a session's worker is to run: the limits it enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionArgs {
    /// Durability of commits.
    pub synchronous: Synchronous,
    /// Size quota, bytes.
    pub max_bytes: u64,
    /// Statement time limit, milliseconds.
    pub timeout_ms: u64,
    /// Most rows in one answer.
    pub max_rows: u64,
    /// Most bytes in one answer.
    pub max_answer_bytes: u64,
    /// Longest request line.
    pub max_line_bytes: u64,
}

impl SessionArgs {
    /// The worker's command line (see the worker's `session` mode).
    pub fn command(&self, db_path: &str) -> Vec<String> {
        vec![
            "/dbforge-worker".into(),
            "session".into(),
            "--db".into(),
            db_path.into(),
            "--synchronous".into(),
            self.synchronous.as_str().into(),
            "--max-bytes".into(),
            self.max_bytes.to_string(),
            "--timeout-ms".into(),
            self.timeout_ms.to_string(),
            "--max-rows".into(),
            self.max_rows.to_string(),
            "--max-answer-bytes".into(),
            self.max_answer_bytes.to_string(),
            "--max-line-bytes".into(),
            self.max_line_bytes.to_string(),
        ]
    }
}

/// The two byte streams of an open session: the worker's stdout (already
/// separated from its stderr) and its stdin.
pub struct SessionIo {
    /// Chunks of the worker's stdout, as they arrive: not lines.
    pub output: Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>,
    /// The worker's stdin; shutting it down ends the session.
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

/// Failures of the runtime, for the layers above to map.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The database has no home.
    #[error("no such database")]
    NotFound,
    /// The container is not running (stopped, killed, removed meanwhile).
    #[error("container is not running")]
    NotRunning,
    /// The runtime itself cannot be reached.
    #[error("runtime unreachable: {0}")]
    Unavailable(String),
    /// The runtime answered with an error.
    #[error("runtime error: {0}")]
    Failed(String),
}

/// Creates databases' homes and containers, and opens sessions into them.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Whether the runtime answers.
    async fn ping(&self) -> Result<(), RuntimeError>;

    /// Every database this gateway owns (every home), with its container.
    async fn list(&self) -> Result<Vec<Instance>, RuntimeError>;

    /// One database, or `None` when it has no home.
    async fn find(&self, name: &DbName) -> Result<Option<Instance>, RuntimeError>;

    /// Creates the database's home (idempotent). Returns its settings: the
    /// given ones when new, the existing ones otherwise.
    async fn create_home(
        &self,
        name: &DbName,
        settings: DbSettings,
    ) -> Result<DbSettings, RuntimeError>;

    /// Makes sure the database's container exists and runs: creates it if
    /// missing, starts it if stopped. Never creates a home: a database
    /// without one is [`RuntimeError::NotFound`]. Returns the container and
    /// whether it was created by this call.
    async fn start(&self, name: &DbName) -> Result<(Container, bool), RuntimeError>;

    /// Stops and removes the container; the home and its data stay.
    /// Returns whether there was a container.
    async fn remove_container(&self, name: &DbName) -> Result<bool, RuntimeError>;

    /// Removes the container and the home with all its data. Returns
    /// whether there was a home.
    async fn destroy(&self, name: &DbName) -> Result<bool, RuntimeError>;

    /// Opens a session: the worker started in `session` mode inside the
    /// database's running container.
    async fn open_session(
        &self,
        name: &DbName,
        args: &SessionArgs,
    ) -> Result<SessionIo, RuntimeError>;
}
