//! `dbforge-bench`: DB-Forge's load generator and scenario driver.
//!
//! - `suite`: every scenario against the gateway and the baselines, writing
//!   `results.json` and `results.md` (what `make bench` runs);
//! - `load`: one scenario against one HTTP target (ad-hoc runs, profiling);
//! - `make-db`: the 100 000-row database file other baselines serve;
//! - `free-port`: prints a free loopback TCP port.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use dbforge_benches::http::Target;
use dbforge_benches::load::{run_closed_loop, Timing};
use dbforge_benches::report::{table_header, table_row, RunResult};
use dbforge_benches::suite::{self, HttpRunner, SuiteConfig};
use dbforge_benches::workload::{self, Scenario};
use dbforge_benches::{http::HttpCaller, inproc};

#[derive(Parser)]
#[command(about = "DB-Forge's load generator and benchmark driver")]
struct Cli {
    /// Tokio worker threads of the load generator (it shares the machine
    /// with the servers it measures; default: one per core).
    #[arg(long, env = "BENCH_CLIENT_THREADS", global = true)]
    client_threads: Option<usize>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs the scenarios against the gateway and the baselines.
    Suite(Box<SuiteArgs>),
    /// Runs one scenario against one HTTP target.
    Load(Box<LoadArgs>),
    /// Writes the 100 000-row items database to a file.
    MakeDb {
        /// The file to (re)create.
        #[arg(long)]
        path: PathBuf,
    },
    /// Prints a free TCP port on 127.0.0.1.
    FreePort,
}

#[derive(Args)]
struct TimingArgs {
    /// Measured seconds per run.
    #[arg(long, env = "BENCH_DURATION", default_value_t = 10.0)]
    duration: f64,
    /// Warm-up seconds per run, not counted.
    #[arg(long, env = "BENCH_WARMUP", default_value_t = 2.0)]
    warmup: f64,
    /// Connection counts, comma-separated.
    #[arg(
        long,
        env = "BENCH_CONNECTIONS",
        value_delimiter = ',',
        default_value = "1,8,64"
    )]
    connections: Vec<usize>,
}

impl TimingArgs {
    fn timing(&self) -> Timing {
        Timing {
            warmup: Duration::from_secs_f64(self.warmup),
            duration: Duration::from_secs_f64(self.duration),
        }
    }
}

#[derive(Args)]
struct SuiteArgs {
    #[command(flatten)]
    timing: TimingArgs,
    /// The gateway's root URL (loopback).
    #[arg(long, env = "BENCH_GATEWAY")]
    gateway: Option<String>,
    /// The gateway's pid, for its memory.
    #[arg(long, env = "BENCH_GATEWAY_PID")]
    gateway_pid: Option<u32>,
    /// The baseline server's root URL (loopback).
    #[arg(long, env = "BENCH_BASELINE")]
    baseline: Option<String>,
    /// Datasette's root URL (loopback).
    #[arg(long, env = "BENCH_DATASETTE")]
    datasette: Option<String>,
    /// The database name Datasette serves the items file as.
    #[arg(long, env = "BENCH_DATASETTE_DB", default_value = "items")]
    datasette_db: String,
    /// Worker image for the exec-level baselines.
    #[arg(long, env = "BENCH_WORKER_IMAGE")]
    worker_image: Option<String>,
    /// The items database made by `make-db` (for the exec baselines).
    #[arg(long, env = "BENCH_DB_FILE")]
    db_file: Option<PathBuf>,
    /// Skip the in-process rusqlite baseline.
    #[arg(long)]
    no_inproc: bool,
    /// Load scenarios, comma-separated (default: all).
    #[arg(long, env = "BENCH_SCENARIOS", value_delimiter = ',')]
    scenarios: Option<Vec<Scenario>>,
    /// Connection counts of the exec-level baselines.
    #[arg(
        long,
        env = "BENCH_EXEC_CONNECTIONS",
        value_delimiter = ',',
        default_value = "1,8"
    )]
    exec_connections: Vec<usize>,
    /// Cold-start samples per target (0 skips).
    #[arg(long, env = "BENCH_COLD_SAMPLES", default_value_t = 20)]
    cold_samples: usize,
    /// Databases for the many-tenants scenario (0 skips).
    #[arg(long, env = "BENCH_TENANTS", default_value_t = 200)]
    tenants: usize,
    /// Run id: names databases and Docker objects (default: from the clock).
    #[arg(long, env = "BENCH_RUN_ID")]
    run_id: Option<String>,
    /// Scratch directory for temporary database files.
    #[arg(long, env = "BENCH_SCRATCH")]
    scratch: Option<PathBuf>,
    /// Ledger of spawned databases, for clean-up after a crash.
    #[arg(long, env = "BENCH_LEDGER")]
    ledger: Option<PathBuf>,
    /// Output directory.
    #[arg(long, env = "BENCH_OUT", default_value = "bench-results")]
    out: PathBuf,
}

#[derive(Args)]
struct LoadArgs {
    #[command(flatten)]
    timing: TimingArgs,
    /// The target's root URL (loopback).
    #[arg(long)]
    url: String,
    /// What each request does.
    #[arg(long, value_enum, default_value = "point-read")]
    scenario: Scenario,
    /// Database to run on. With --setup it is created fresh and deleted
    /// after; without, it must exist with the scenario's tables.
    #[arg(long, default_value = "bench-load")]
    db: String,
    /// Create (and afterwards delete) the database.
    #[arg(long)]
    setup: bool,
    /// The target is Datasette serving the items file as --db (point reads).
    #[arg(long)]
    datasette: bool,
    /// Label for the target in the table.
    #[arg(long, default_value = "target")]
    label: String,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// With --setup: record a system-wide `perf` profile of each measured
    /// window to PATH.CONNS.
    #[arg(long)]
    perf: Option<PathBuf>,
}

fn main() -> Result<(), String> {
    let cli = Cli::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    // Named apart from the servers' tokio-rt-worker threads, so profiles
    // and per-command CPU tell the load generator from what it measures.
    rt.thread_name("bench-client");
    if let Some(n) = cli.client_threads {
        rt.worker_threads(n);
    }
    let rt = rt.enable_all().build().map_err(|e| e.to_string())?;
    match cli.cmd {
        Cmd::FreePort => {
            let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            println!("{}", l.local_addr().map_err(|e| e.to_string())?.port());
            Ok(())
        }
        Cmd::MakeDb { path } => inproc::make_db(&path, true).map_err(|e| e.to_string()),
        Cmd::Load(args) => rt.block_on(load(*args)),
        Cmd::Suite(args) => rt.block_on(run_suite(*args)),
    }
}

/// One closed-loop run of `make` per connection count, against a server
/// that is already set up.
async fn load_each(
    args: &LoadArgs,
    target: &Target,
    timing: Timing,
    make: dbforge_benches::http::CallMaker,
    expect: &'static [u8],
    rows_per_request: Option<f64>,
) -> Vec<RunResult> {
    let mut runs = Vec::new();
    for &conns in &args.timing.connections {
        let m = run_closed_loop(
            HttpCaller::many(target, conns, make.clone(), Some(expect)),
            timing,
        )
        .await;
        runs.push(RunResult::new(
            args.scenario.name(),
            &args.label,
            conns,
            rows_per_request,
            m,
        ));
    }
    runs
}

async fn load(args: LoadArgs) -> Result<(), String> {
    let target = Target::parse(&args.url)?;
    let timing = args.timing.timing();
    println!("{}", table_header());
    let runs = if args.datasette {
        let (make, expect) = workload::datasette_read(&args.db);
        load_each(&args, &target, timing, make, expect, None).await
    } else if args.setup {
        let runner = HttpRunner {
            target: &target,
            label: &args.label,
            connections: &args.timing.connections,
            timing,
            ledger: None,
            profile: args.perf.as_deref(),
        };
        runner.scenario(&args.db, args.scenario).await?
    } else {
        let (make, expect) = workload::api_calls(args.scenario, &args.db);
        let rows = args.scenario.rows_per_request();
        load_each(&args, &target, timing, make, expect, rows).await
    };
    for r in &runs {
        println!("{}", table_row(r));
        if let Some(e) = &r.first_error {
            println!("    first error: {e}");
        }
    }
    if let Some(path) = args.json {
        let json = serde_json::to_string_pretty(&runs).map_err(|e| e.to_string())?;
        std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

async fn run_suite(a: SuiteArgs) -> Result<(), String> {
    let parse = |u: &Option<String>| u.as_deref().map(Target::parse).transpose();
    let run_id = a.run_id.clone().unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format!("{:x}", secs % 0x100_0000)
    });
    let scratch = a
        .scratch
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("dbforge-bench-{run_id}")));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cfg = SuiteConfig {
        run_id,
        gateway: parse(&a.gateway)?,
        gateway_pid: a.gateway_pid,
        baseline: parse(&a.baseline)?,
        datasette: parse(&a.datasette)?.map(|t| (t, a.datasette_db.clone())),
        worker_image: a.worker_image.clone(),
        inproc: !a.no_inproc,
        db_file: a.db_file.clone(),
        scratch: scratch.clone(),
        scenarios: a
            .scenarios
            .clone()
            .unwrap_or_else(|| Scenario::ALL.to_vec()),
        connections: a.timing.connections.clone(),
        exec_connections: a.exec_connections.clone(),
        inproc_threads: if cpus > 1 { vec![1, cpus] } else { vec![1] },
        cold_samples: a.cold_samples,
        tenants: a.tenants,
        timing: a.timing.timing(),
        ledger: a.ledger.clone(),
        out_dir: a.out.clone(),
    };
    let report = suite::run(cfg).await;
    let _ = std::fs::remove_dir_all(&scratch);
    println!("\n{}", report.markdown());
    println!("results: {}", a.out.join("results.json").display());
    Ok(())
}
