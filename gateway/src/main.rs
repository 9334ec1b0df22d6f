//! The `dbforge-gateway` binary: configuration, logging, signals; the rest is
//! the library.

use std::io::IsTerminal;

use dbforge_gateway::logs::BatchedStderr;
use dbforge_gateway::Config;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let config = Config::from_env_and_args();
    let filter = EnvFilter::try_from_env("DBFORGE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Every request is logged: lines are buffered and written out in
    // batches (see `logs`), flushed once more before exit.
    let writer = BatchedStderr::default();
    let logs = tracing_subscriber::fmt()
        .with_writer(writer.clone())
        .with_env_filter(filter);
    if config.log_json {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        tracing::info!(listen = %listener.local_addr()?, image = %config.worker_image, "DB-Forge gateway listening");
        writer.spawn_flusher();
        dbforge_gateway::run(listener, config, shutdown_signal()).await
    });
    let code = match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "gateway failed");
            std::process::ExitCode::FAILURE
        }
    };
    writer.flush();
    code
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
