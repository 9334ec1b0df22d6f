//! DB-Forge's gateway: a REST API that provisions one container per
//! database and runs every SQL statement inside it.
//!
//! The request path, outside in:
//!
//! - [`http`]: hyper server; [`http::routes`] turns (method, path) into a
//!   route; handlers parse bodies and shape answers; errors become HTTP in
//!   one place ([`error`]).
//! - [`registry`]: the databases: spawn, prune, delete, wake on demand, and
//!   dispatch of operations to sessions, under a global in-flight bound.
//! - [`pool`]: per database, a deadpool of request slots over a few warm
//!   sessions.
//! - [`session`]: one pipelined worker session: coalesced writes, answers
//!   matched to requests in order.
//! - [`transactions`]: interactive transactions, each pinned to a session of
//!   its own.
//! - [`runtime`]: the seam that creates a database's home and opens a session
//!   into it; [`runtime::DockerRuntime`] is the real one.
//! - [`config`], [`names`], [`sql`]: configuration, validated database
//!   names, and the SQL of the convenience endpoints.
//!
//! The worker protocol itself lives in the `dbforge-protocol` crate.

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tokio::net::TcpListener;

pub mod config;
pub mod error;
pub mod http;
pub mod logs;
pub mod names;
pub mod pool;
pub mod registry;
pub mod runtime;
pub mod session;
pub mod sql;
pub mod transactions;

pub use config::Config;

/// How often idle transactions are looked for.
const TX_REAP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs the gateway on an already-bound listener against the Docker
/// runtime until `shutdown` completes, then drains and exits.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let config = Arc::new(config);
    let runtime: Arc<dyn runtime::Runtime> = Arc::new(runtime::DockerRuntime::new(&config));
    let registry = registry::Registry::new(runtime, config.clone());
    match registry.adopt_all().await {
        Ok(n) => {
            tracing::info!(databases = n, namespace = %config.namespace, "adopted existing databases")
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not list databases at start-up; will retry on demand")
        }
    }
    let app = Arc::new(http::App {
        registry,
        config,
        shutting_down: AtomicBool::new(false),
    });
    let reaper = tokio::spawn({
        let app = app.clone();
        async move {
            let mut tick = tokio::time::interval(TX_REAP_INTERVAL);
            loop {
                tick.tick().await;
                let ended = app.registry.reap_transactions();
                if ended > 0 {
                    tracing::info!(ended, "rolled back idle transactions");
                }
            }
        }
    });
    let result = http::serve(listener, app, shutdown).await;
    reaper.abort();
    result
}
