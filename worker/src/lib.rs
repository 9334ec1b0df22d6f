//! The DB-Forge worker: runs inside each database's container.
//!
//! - `dbforge-worker idle` is the container's main process ([`idle`]).
//! - `dbforge-worker session --db PATH ...` is started by `docker exec -i` and
//!   speaks the protocol of `dbforge-protocol` on stdin/stdout ([`session`]),
//!   running SQL on the database through one SQLite connection ([`db`]) whose
//!   safety rules live in [`guard`].

pub mod config;
pub mod db;
pub mod guard;
pub mod idle;
pub mod lines;
pub mod session;

pub use config::{Command, Limits, SessionConfig, Synchronous};
pub use session::Session;
