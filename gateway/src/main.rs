//! The `dbforge-gateway` binary: configuration, logging, signals; the rest is
//! the library.

use std::io::IsTerminal;

use dbforge_gateway::Config;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let config = Config::from_env_and_args();
    let filter = EnvFilter::try_from_env("DBFORGE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Every request is logged, so lines go through a channel to a writer
    // thread that batches them into few writes, off the request path. The
    // guard flushes what is left when main returns.
    let (writer, _log_guard) = tracing_appender::non_blocking(std::io::BufWriter::with_capacity(
        64 * 1024,
        std::io::stderr(),
    ));
    let logs = tracing_subscriber::fmt()
        .with_writer(writer)
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
        dbforge_gateway::run(listener, config, shutdown_signal()).await
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "gateway failed");
            std::process::ExitCode::FAILURE
        }
    }
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
