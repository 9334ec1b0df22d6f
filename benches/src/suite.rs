//! The scenario driver: sets up a fresh database per scenario on every
//! target, runs the load at each connection count, tears the database down,
//! and writes the report after every step (so a run cut short still leaves
//! its results).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::query_parameters::StatsOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use hyper::Method;
use serde_json::{json, Value};

use crate::cpu::{pids_by_command, proc_memory};
use crate::exec::{self, NaiveExecCaller, WarmExecCaller};
use crate::http::{HttpCaller, JsonClient, Target};
use crate::inproc;
use crate::load::{new_histogram, record, run_closed_loop, Timing};
use crate::report::{ColdResult, Latency, Report, RunResult, Spread, TenantsResult};
use crate::workload::{self, Scenario};

/// Longest a set-up or tear-down call may take (filling 100 000 rows
/// through a gateway included).
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How many spawns (and deletes) the many-tenants scenario runs at once.
const TENANT_CONCURRENCY: usize = 4;
/// Container stats calls in flight at once in the many-tenants scenario.
const STATS_CONCURRENCY: usize = 16;
/// Pause between spawning the tenants and reading memory, so that start-up
/// allocations are released and idle state is what gets measured.
const TENANT_SETTLE: Duration = Duration::from_secs(3);

/// What to run, and against what.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    /// Names this run's databases and Docker objects.
    pub run_id: String,
    /// The gateway under test.
    pub gateway: Option<Target>,
    /// The gateway's process id, for its memory.
    pub gateway_pid: Option<u32>,
    /// The in-process hyper + rusqlite baseline server.
    pub baseline: Option<Target>,
    /// Datasette, and the name it serves the items database under.
    pub datasette: Option<(Target, String)>,
    /// The worker image, for the exec-level baselines.
    pub worker_image: Option<String>,
    /// Whether to run the in-process rusqlite baseline.
    pub inproc: bool,
    /// A ready 100 000-row items database (`dbforge-bench make-db`).
    pub db_file: Option<PathBuf>,
    /// A directory for temporary database files.
    pub scratch: PathBuf,
    /// Load scenarios to run.
    pub scenarios: Vec<Scenario>,
    /// Connection counts for HTTP targets.
    pub connections: Vec<usize>,
    /// Connection counts for the exec-level baselines.
    pub exec_connections: Vec<usize>,
    /// Thread counts for the in-process baseline.
    pub inproc_threads: Vec<usize>,
    /// Cold-start samples per target (0: skip).
    pub cold_samples: usize,
    /// Databases in the many-tenants scenario (0: skip).
    pub tenants: usize,
    /// Warm-up and window of each load run.
    pub timing: Timing,
    /// Appends `target<TAB>name<TAB>container` per spawned database, for a
    /// clean-up that must happen even if this process dies.
    pub ledger: Option<PathBuf>,
    /// Where `results.json` and `results.md` go.
    pub out_dir: PathBuf,
}

/// Runs the whole suite and returns its report (also written to disk).
pub async fn run(cfg: SuiteConfig) -> Report {
    let mut report = Report {
        run_id: cfg.run_id.clone(),
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        machine: crate::report::Machine::detect(),
        warmup_s: cfg.timing.warmup.as_secs_f64(),
        duration_s: cfg.timing.duration.as_secs_f64(),
        ..Default::default()
    };
    let docker = match exec::docker().await {
        Ok(d) => {
            if let Ok(v) = d.version().await {
                report.machine.docker = Some(format!(
                    "{} (API {})",
                    v.version.unwrap_or_default(),
                    v.api_version.unwrap_or_default()
                ));
            }
            Some(d)
        }
        Err(e) => {
            report
                .skipped
                .push(format!("Docker unreachable ({e}): exec baselines, memory"));
            None
        }
    };
    println!("{}", crate::report::table_header());
    for &scenario in &cfg.scenarios {
        let phase = Instant::now();
        if cfg.inproc {
            // Writers on several threads only queue on SQLite's lock (its
            // busy handler sleeps, unfairly): the limit is one writer.
            let writes_only = matches!(scenario, Scenario::Insert | Scenario::Insert100);
            for &threads in cfg
                .inproc_threads
                .iter()
                .filter(|&&t| t == 1 || !writes_only)
            {
                let path = cfg
                    .scratch
                    .join(format!("inproc-{}.sqlite3", scenario.name()));
                let timing = cfg.timing;
                let outcome = tokio::task::spawn_blocking(move || {
                    inproc::run(scenario, &path, threads, timing)
                })
                .await;
                match outcome {
                    Ok(Ok(m)) => push(
                        &mut report,
                        RunResult::new(
                            scenario.name(),
                            "inproc",
                            threads,
                            scenario.rows_per_request(),
                            m,
                        ),
                    ),
                    Ok(Err(e)) => report
                        .skipped
                        .push(format!("inproc {}: {e}", scenario.name())),
                    Err(e) => report
                        .skipped
                        .push(format!("inproc {}: {e}", scenario.name())),
                }
            }
        }
        // Every HTTP target gets its fresh database first; then the load
        // runs go round the targets at each connection count, so that the
        // targets compared in a ratio ran minutes apart at most, not ten.
        let name = format!("bench-{}-{}", cfg.run_id, scenario.name());
        let mut live = Vec::new();
        for (label, target) in [("baseline-http", &cfg.baseline), ("gateway", &cfg.gateway)] {
            let Some(target) = target else { continue };
            let runner = HttpRunner {
                target,
                label,
                connections: &cfg.connections,
                timing: cfg.timing,
                ledger: cfg.ledger.as_deref(),
                profile: None,
            };
            match runner.setup(&name, scenario).await {
                Ok(()) => live.push(runner),
                Err(e) => report
                    .skipped
                    .push(format!("{label} {}: set-up: {e}", scenario.name())),
            }
        }
        let datasette = match (&cfg.datasette, scenario) {
            (Some((target, db)), Scenario::PointRead) => {
                Some((target, workload::datasette_read(db)))
            }
            _ => None,
        };
        for &conns in &cfg.connections {
            for runner in &live {
                let r = runner.run(&name, scenario, conns).await;
                push(&mut report, r);
            }
            if let Some((target, (make, expect))) = &datasette {
                let callers = HttpCaller::many(target, conns, make.clone(), Some(expect));
                let m = run_closed_loop(callers, cfg.timing).await;
                push(
                    &mut report,
                    RunResult::new(scenario.name(), "datasette", conns, None, m),
                );
            }
        }
        for runner in &live {
            runner.teardown(&name).await;
        }
        if scenario == Scenario::PointRead {
            match (&docker, &cfg.worker_image, &cfg.db_file) {
                (Some(docker), Some(image), Some(db_file)) => {
                    if let Err(e) = exec_reads(&mut report, docker, image, db_file, &cfg).await {
                        report.skipped.push(format!("exec baselines: {e}"));
                    }
                }
                _ => report
                    .skipped
                    .push("exec baselines: need Docker, --worker-image and --db-file".into()),
            }
        }
        report
            .phases
            .push((scenario.name().to_string(), phase.elapsed().as_secs_f64()));
        save(&report, &cfg.out_dir);
    }
    if cfg.cold_samples > 0 {
        let phase = Instant::now();
        for (label, target) in [("baseline-http", &cfg.baseline), ("gateway", &cfg.gateway)] {
            let Some(target) = target else { continue };
            match cold_start_http(target, label, &cfg).await {
                Ok(c) => push_cold(&mut report, c),
                Err(e) => report.skipped.push(format!("cold start {label}: {e}")),
            }
        }
        if let (Some(docker), Some(image)) = (&docker, &cfg.worker_image) {
            match exec::cold_start(docker, image, &cfg.run_id, &cfg.scratch, cfg.cold_samples).await
            {
                Ok(h) => push_cold(
                    &mut report,
                    ColdResult {
                        target: "docker (bollard)".into(),
                        what: "create + start container, exec worker, first answer".into(),
                        samples: h.len(),
                        latency: Latency::of(&h),
                        spawn_only: None,
                    },
                ),
                Err(e) => report.skipped.push(format!("cold start docker: {e}")),
            }
        }
        report
            .phases
            .push(("cold start".into(), phase.elapsed().as_secs_f64()));
        save(&report, &cfg.out_dir);
    }
    if cfg.tenants > 0 {
        let phase = Instant::now();
        match (&cfg.gateway, &docker) {
            (Some(gw), Some(docker)) => match tenants(gw, docker, &cfg).await {
                Ok(t) => report.tenants = Some(t),
                Err(e) => report.skipped.push(format!("many tenants: {e}")),
            },
            _ => report
                .skipped
                .push("many tenants: needs a gateway and Docker".into()),
        }
        report
            .phases
            .push(("many tenants".into(), phase.elapsed().as_secs_f64()));
        save(&report, &cfg.out_dir);
    }
    report
}

/// Records and prints one load run.
fn push(report: &mut Report, r: RunResult) {
    println!("{}", crate::report::table_row(&r));
    if let Some(e) = &r.first_error {
        println!("    first error: {e}");
    }
    report.runs.push(r);
}

/// Records and prints one cold-start series.
fn push_cold(report: &mut Report, c: ColdResult) {
    println!(
        "cold start  {:<14} n={} p50 {} p99 {} max {}  ({})",
        c.target,
        c.samples,
        crate::report::fmt_us(c.latency.p50_us as f64),
        crate::report::fmt_us(c.latency.p99_us as f64),
        crate::report::fmt_us(c.latency.max_us as f64),
        c.what
    );
    report.cold_start.push(c);
}

/// Writes `results.json` and `results.md` into `dir`.
pub fn save(report: &Report, dir: &Path) {
    let _ = std::fs::create_dir_all(dir);
    if let Ok(json) = serde_json::to_string_pretty(report) {
        let _ = std::fs::write(dir.join("results.json"), json);
    }
    let _ = std::fs::write(dir.join("results.md"), report.markdown());
}

/// Runs scenarios against one HTTP target.
pub struct HttpRunner<'a> {
    /// The server.
    pub target: &'a Target,
    /// Its name in the results.
    pub label: &'a str,
    /// Connection counts, one load run each.
    pub connections: &'a [usize],
    /// Warm-up and window of each load run.
    pub timing: Timing,
    /// Where spawned databases are noted for clean-up.
    pub ledger: Option<&'a Path>,
    /// Record a `perf` profile of each window to `PATH.CONNS`.
    pub profile: Option<&'a Path>,
}

impl HttpRunner<'_> {
    /// Runs `scenario` on a fresh database `name`: the load at each
    /// connection count, then the database deleted (also when a step fails).
    pub async fn scenario(&self, name: &str, scenario: Scenario) -> Result<Vec<RunResult>, String> {
        self.setup(name, scenario).await?;
        let mut runs = Vec::new();
        for &conns in self.connections {
            runs.push(self.run(name, scenario, conns).await);
        }
        self.teardown(name).await;
        Ok(runs)
    }

    /// Spawns database `name` with the scenario's tables and rows; on
    /// failure it is deleted again.
    pub async fn setup(&self, name: &str, scenario: Scenario) -> Result<(), String> {
        let mut client = JsonClient::new(self.target);
        let set_up = tokio::time::timeout(
            SETUP_TIMEOUT,
            setup_db(&mut client, name, scenario, self.ledger),
        )
        .await
        .unwrap_or_else(|_| Err("set-up timed out".into()));
        if set_up.is_err() {
            delete_db(&mut client, name).await;
        }
        set_up
    }

    /// One load run of `scenario` on database `name` at `conns` connections.
    pub async fn run(&self, name: &str, scenario: Scenario, conns: usize) -> RunResult {
        let (make, expect) = workload::api_calls(scenario, name);
        let callers = HttpCaller::many(self.target, conns, make, Some(expect));
        let perf = self.profile.map(|p| {
            let mut file = p.as_os_str().to_owned();
            file.push(format!(".{conns}"));
            crate::profile::during(Path::new(&file), self.timing)
        });
        let m = run_closed_loop(callers, self.timing).await;
        let mut r = RunResult::new(
            scenario.name(),
            self.label,
            conns,
            scenario.rows_per_request(),
            m,
        );
        if let Some(perf) = perf {
            match perf.await {
                Ok(Ok(p)) => {
                    eprintln!("    profile: {}", p.samples.display());
                    let per = |n: u64| n as f64 / r.requests.max(1) as f64;
                    for (event, n) in &p.counts {
                        eprintln!("    {event}: {n} ({:.1} per request)", per(*n));
                    }
                    r.counts = Some(p.counts);
                }
                Ok(Err(e)) => eprintln!("    profile: {e}"),
                Err(e) => eprintln!("    profile: {e}"),
            }
        }
        r
    }

    /// Deletes database `name`.
    pub async fn teardown(&self, name: &str) {
        delete_db(&mut JsonClient::new(self.target), name).await;
    }
}

/// Spawns database `name` and gives it the scenario's tables and rows.
pub async fn setup_db(
    c: &mut JsonClient,
    name: &str,
    scenario: Scenario,
    ledger: Option<&Path>,
) -> Result<(), String> {
    spawn(c, name, scenario.synchronous(), ledger).await?;
    create_table(
        c,
        name,
        "events",
        &[
            ("id", "INTEGER", true),
            ("payload", "TEXT", false),
            ("n", "INTEGER", false),
        ],
    )
    .await?;
    if !scenario.needs_items() {
        return Ok(());
    }
    create_table(
        c,
        name,
        "items",
        &[
            ("id", "INTEGER", true),
            ("name", "TEXT", false),
            ("score", "INTEGER", false),
        ],
    )
    .await?;
    let query = format!("/api/db/{name}/query");
    if let Err(e) = c
        .ok(
            Method::POST,
            &query,
            Some(&json!({"sql": workload::ITEMS_FILL})),
        )
        .await
    {
        // The server may refuse a recursive CTE: insert the rows in batches.
        eprintln!("    fill with one statement refused ({e}); inserting in batches");
        let rows_path = format!("/api/db/{name}/tables/items/rows");
        for start in (1..=workload::ITEMS).step_by(1000) {
            let rows: Vec<Value> = (start..start + 1000)
                .map(|id| json!({"id": id, "name": format!("item-{id}"), "score": (id * 7919) % 1000}))
                .collect();
            c.ok(Method::POST, &rows_path, Some(&json!({ "rows": rows })))
                .await?;
        }
    }
    let v = c
        .ok(
            Method::POST,
            &query,
            Some(&json!({"sql": "SELECT count(*) AS n FROM items"})),
        )
        .await?;
    if v["data"][0]["n"] != json!(workload::ITEMS) {
        return Err(format!(
            "items table has {} rows, not {}",
            v["data"][0]["n"],
            workload::ITEMS
        ));
    }
    Ok(())
}

/// `POST /admin/databases/spawn/{name}`; returns the container id.
async fn spawn(
    c: &mut JsonClient,
    name: &str,
    synchronous: Option<&str>,
    ledger: Option<&Path>,
) -> Result<String, String> {
    let body = synchronous.map(|s| json!({ "synchronous": s }));
    let v = c
        .ok(
            Method::POST,
            &format!("/admin/databases/spawn/{name}"),
            body.as_ref(),
        )
        .await?;
    let container = v["container_id"].as_str().unwrap_or("").to_string();
    if let Some(path) = ledger {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "http://{}\t{name}\t{container}", c.target.host);
        }
    }
    Ok(container)
}

/// `POST /api/db/{name}/tables`.
async fn create_table(
    c: &mut JsonClient,
    name: &str,
    table: &str,
    cols: &[(&str, &str, bool)],
) -> Result<(), String> {
    let columns: Vec<Value> = cols
        .iter()
        .map(|(n, t, pk)| {
            if *pk {
                json!({"name": n, "type": t, "primary_key": true})
            } else {
                json!({"name": n, "type": t, "not_null": true})
            }
        })
        .collect();
    c.ok(
        Method::POST,
        &format!("/api/db/{name}/tables"),
        Some(&json!({"table_name": table, "columns": columns})),
    )
    .await
    .map(drop)
}

/// `DELETE /admin/databases/{name}`, reporting (not failing on) errors.
async fn delete_db(c: &mut JsonClient, name: &str) {
    let path = format!("/admin/databases/{name}");
    match tokio::time::timeout(SETUP_TIMEOUT, c.call(Method::DELETE, &path, None)).await {
        Ok(Ok((status, _))) if status.is_success() => {}
        Ok(Ok((status, v))) => eprintln!("    delete {name}: HTTP {status}: {v}"),
        Ok(Err(e)) => eprintln!("    delete {name}: {e}"),
        Err(_) => eprintln!("    delete {name}: timed out"),
    }
}

/// Point reads at the `docker exec` level, on a copy of the items database in
/// a worker container of our own.
async fn exec_reads(
    report: &mut Report,
    docker: &Docker,
    image: &str,
    db_file: &Path,
    cfg: &SuiteConfig,
) -> Result<(), String> {
    let dir = cfg.scratch.join("exec-data");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let db = dir.join("db.sqlite3");
    std::fs::copy(db_file, &db).map_err(|e| format!("copy {}: {e}", db_file.display()))?;
    exec::open_to_all(&dir)?;
    exec::open_to_all(&db)?;
    let name = format!("dbforge-bench-{}-exec", cfg.run_id);
    let id = exec::start_worker(docker, image, &name, &cfg.run_id, &dir).await?;
    let result = async {
        exec::wait_ready(docker, &id, Duration::from_secs(10)).await?;
        for &conns in &cfg.exec_connections {
            let m = run_closed_loop(NaiveExecCaller::many(docker, &id, conns), cfg.timing).await;
            push(
                report,
                RunResult::new("point-read", "exec-naive", conns, None, m),
            );
        }
        for &conns in &cfg.exec_connections {
            let callers = WarmExecCaller::many(docker, &id, conns).await?;
            let m = run_closed_loop(callers, cfg.timing).await;
            push(
                report,
                RunResult::new("point-read", "exec-warm", conns, None, m),
            );
        }
        Ok::<(), String>(())
    }
    .await;
    exec::remove(docker, &id).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Cold start through an HTTP target: spawn a database, then its first
/// query answered; each deleted before the next (not timed).
async fn cold_start_http(
    target: &Target,
    label: &str,
    cfg: &SuiteConfig,
) -> Result<ColdResult, String> {
    let mut c = JsonClient::new(target);
    let mut total = new_histogram();
    let mut spawn_only = new_histogram();
    for i in 0..cfg.cold_samples {
        let name = format!("bench-{}-cold-{i}", cfg.run_id);
        let t0 = Instant::now();
        let step = async {
            spawn(&mut c, &name, None, cfg.ledger.as_deref()).await?;
            let t1 = Instant::now();
            c.ok(
                Method::POST,
                &format!("/api/db/{name}/query"),
                Some(&json!({"sql": "SELECT 1 AS one"})),
            )
            .await?;
            Ok::<_, String>(t1)
        };
        let outcome = tokio::time::timeout(SETUP_TIMEOUT, step)
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        let t2 = Instant::now();
        delete_db(&mut c, &name).await;
        let t1 = outcome?;
        record(&mut spawn_only, t1 - t0);
        record(&mut total, t2 - t0);
    }
    Ok(ColdResult {
        target: label.to_string(),
        what: "spawn, then first query answered".into(),
        samples: total.len(),
        latency: Latency::of(&total),
        spawn_only: Some(Latency::of(&spawn_only)),
    })
}

/// Many tenants: spawn databases through the gateway, query each, then read
/// the gateway's and Docker's memory; delete them all.
async fn tenants(gw: &Target, docker: &Docker, cfg: &SuiteConfig) -> Result<TenantsResult, String> {
    let n = cfg.tenants;
    let names: Arc<Vec<String>> = Arc::new(
        (0..n)
            .map(|i| format!("bench-{}-t{i:03}", cfg.run_id))
            .collect(),
    );
    let rss = |pid: Option<u32>| pid.and_then(proc_memory).map(|m| m.rss);
    let first = |comm: &str| pids_by_command(comm).into_iter().next();
    let mut t = TenantsResult {
        databases: n,
        spawn_concurrency: TENANT_CONCURRENCY,
        gateway_rss_before: rss(cfg.gateway_pid),
        ..Default::default()
    };
    t.dockerd_rss.0 = rss(first("dockerd"));
    t.containerd_rss.0 = rss(first("containerd"));

    // Spawn and query, a few at a time.
    let started = Instant::now();
    let ledger = cfg.ledger.clone();
    let results = for_each_db(gw, &names, move |mut c, name| {
        let ledger = ledger.clone();
        async move {
            let id = spawn(&mut c, &name, None, ledger.as_deref()).await?;
            c.ok(
                Method::POST,
                &format!("/api/db/{name}/query"),
                Some(&json!({"sql": "SELECT count(*) FROM sqlite_master"})),
            )
            .await?;
            Ok(id)
        }
    })
    .await;
    t.spawn_wall_s = started.elapsed().as_secs_f64();
    let measured = Instant::now();
    let ids: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .filter(|id| !id.is_empty())
        .collect();
    t.answered = results.iter().filter(|r| r.is_ok()).count();
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        eprintln!("    many tenants: first failure: {e}");
    }

    tokio::time::sleep(TENANT_SETTLE).await;
    t.gateway_rss_after = rss(cfg.gateway_pid);
    t.dockerd_rss.1 = rss(first("dockerd"));
    t.containerd_rss.1 = rss(first("containerd"));
    let shims: Vec<_> = pids_by_command("containerd-shim")
        .into_iter()
        .filter_map(proc_memory)
        .collect();
    t.shims = (
        shims.len(),
        shims.iter().map(|m| m.rss).sum(),
        shims.iter().map(|m| m.pss).sum(),
    );
    // Docker takes about a second per stats call here even with one-shot:
    // ask for many at once.
    let mems: Vec<Option<(u64, u64)>> = futures_util::stream::iter(&ids)
        .map(|id| container_memory(docker, id))
        .buffer_unordered(STATS_CONCURRENCY)
        .collect()
        .await;
    let (shown, raw): (Vec<u64>, Vec<u64>) = mems.into_iter().flatten().unzip();
    t.container_usage = Spread::of(shown);
    t.container_usage_raw = Spread::of(raw);
    println!(
        "many tenants: {} spawned+answered of {n} in {:.1} s; gateway RSS {:?} -> {:?}; container (docker stats) {:?}",
        t.answered, t.spawn_wall_s, t.gateway_rss_before, t.gateway_rss_after, t.container_usage
    );

    let measure_s = measured.elapsed().as_secs_f64();
    let deleting = Instant::now();
    for_each_db(gw, &names, |mut c, name| async move {
        delete_db(&mut c, &name).await;
        Ok(String::new())
    })
    .await;
    println!(
        "many tenants: spawn+query {:.0} s, memory readings {measure_s:.0} s, deletes {:.0} s",
        t.spawn_wall_s,
        deleting.elapsed().as_secs_f64()
    );
    Ok(t)
}

/// Runs `f` for every name, [`TENANT_CONCURRENCY`] at a time, each call
/// with its own client; results in the order of `names`.
async fn for_each_db<F, Fut>(
    gw: &Target,
    names: &Arc<Vec<String>>,
    f: F,
) -> Vec<Result<String, String>>
where
    F: Fn(JsonClient, String) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<String, String>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..TENANT_CONCURRENCY {
        let (next, names, f, gw) = (next.clone(), names.clone(), f.clone(), gw.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(name) = names.get(i) else { break };
                let r = tokio::time::timeout(SETUP_TIMEOUT, f(JsonClient::new(&gw), name.clone()))
                    .await
                    .unwrap_or_else(|_| Err("timed out".into()));
                out.push((i, r));
            }
            out
        }));
    }
    let mut all: Vec<(usize, Result<String, String>)> = Vec::new();
    for t in tasks {
        if let Ok(v) = t.await {
            all.extend(v);
        }
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

/// A container's memory: (as `docker stats` shows it, raw cgroup usage).
async fn container_memory(docker: &Docker, id: &str) -> Option<(u64, u64)> {
    let opts = StatsOptionsBuilder::new()
        .stream(false)
        .one_shot(true)
        .build();
    let stats = docker.stats(id, Some(opts)).next().await?.ok()?;
    let mem = stats.memory_stats?;
    let usage = mem.usage?;
    let inactive = mem.stats.as_ref().and_then(|s| {
        s.get("total_inactive_file")
            .or_else(|| s.get("inactive_file"))
            .copied()
    });
    Some((usage - inactive.unwrap_or(0).min(usage), usage))
}
