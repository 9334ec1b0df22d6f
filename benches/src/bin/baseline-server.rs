//! `baseline-server`: the in-process HTTP + rusqlite baseline (see
//! `dbforge_benches::baseline`). Prints `listening on ADDR` once bound.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use dbforge_benches::baseline::Baseline;

/// A minimal hyper + rusqlite server with the gateway's data-plane routes.
#[derive(Parser)]
struct Args {
    /// Address to listen on; loopback only (port 0 picks a free one).
    #[arg(long, env = "BASELINE_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Directory for the database files.
    #[arg(long, env = "BASELINE_DATA_DIR")]
    data_dir: PathBuf,
    /// Tokio worker threads (default: one per core).
    #[arg(long, env = "BASELINE_THREADS")]
    threads: Option<usize>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        return Err("baseline-server listens on loopback only".into());
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    // Named apart from the gateway's tokio-rt-worker threads in profiles.
    rt.thread_name("baseline-rt");
    if let Some(n) = args.threads {
        rt.worker_threads(n);
    }
    rt.enable_all().build()?.block_on(async {
        let server = Baseline::new(&args.data_dir)?;
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        println!("listening on {}", listener.local_addr()?);
        server.serve(listener, shutdown_signal()).await;
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
