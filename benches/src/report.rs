//! Results: what one run measured, the whole report, and its renderings as a
//! terminal table, JSON and Markdown (with ratios and the targets).

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cpu::CpuUsage;
use crate::load::Measured;

/// One load run: one scenario, one target, one number of connections.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// Scenario name (`point-read`, ...).
    pub scenario: String,
    /// Target name (`gateway`, `baseline-http`, `inproc`, ...).
    pub target: String,
    /// Concurrent connections (threads, for in-process).
    pub connections: usize,
    /// Counted requests.
    pub requests: u64,
    /// Failed requests in the window.
    pub errors: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Measured window, seconds.
    pub window_s: f64,
    /// Requests per second.
    pub throughput: f64,
    /// Rows written per second, for writing scenarios.
    pub rows_per_s: Option<f64>,
    /// Latency summary.
    pub latency: Latency,
    /// CPU by process during the window.
    pub cpu: Option<CpuUsage>,
    /// Machine-wide event counts of the window (`perf stat`), when profiled.
    pub counts: Option<Vec<(String, u64)>>,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Largest seen.
    pub max_us: u64,
}

impl Latency {
    /// Summarizes a histogram.
    pub fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        }
    }
}

impl RunResult {
    /// Builds a result from what the engine measured.
    pub fn new(
        scenario: &str,
        target: &str,
        connections: usize,
        rows_per_request: Option<f64>,
        m: Measured,
    ) -> RunResult {
        let throughput = m.throughput();
        RunResult {
            scenario: scenario.to_string(),
            target: target.to_string(),
            connections,
            requests: m.hist.len(),
            errors: m.errors,
            first_error: m.first_error,
            window_s: m.window.as_secs_f64(),
            throughput,
            rows_per_s: rows_per_request.map(|r| r * throughput),
            latency: Latency::of(&m.hist),
            cpu: m.cpu,
            counts: None,
        }
    }

    /// CPU microseconds per request, machine-wide, and the top processes.
    fn cpu_per_request(&self) -> Option<(f64, Vec<(String, f64)>)> {
        let cpu = self.cpu.as_ref()?;
        if self.requests == 0 {
            return None;
        }
        let per = |s: f64| s * 1e6 / self.requests as f64;
        let top = cpu
            .by_command
            .iter()
            .take(5)
            .map(|(c, s)| (c.clone(), per(*s)))
            .collect();
        Some((per(cpu.machine_busy_s), top))
    }
}

/// A cold-start series.
#[derive(Debug, Clone, Serialize)]
pub struct ColdResult {
    /// Target name.
    pub target: String,
    /// What is timed.
    pub what: String,
    /// Samples taken.
    pub samples: u64,
    /// Latency of the series.
    pub latency: Latency,
    /// Spawn call alone, where it is separate from the first answer.
    pub spawn_only: Option<Latency>,
}

/// Memory with many databases.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TenantsResult {
    /// Databases spawned.
    pub databases: usize,
    /// Databases that answered their query.
    pub answered: usize,
    /// Wall time to spawn them all, seconds.
    pub spawn_wall_s: f64,
    /// Spawn concurrency.
    pub spawn_concurrency: usize,
    /// Gateway RSS before any of them, bytes.
    pub gateway_rss_before: Option<u64>,
    /// Gateway RSS with all of them idle, bytes.
    pub gateway_rss_after: Option<u64>,
    /// Per-container memory as `docker stats` shows it (cgroup usage less
    /// inactive file pages), bytes.
    pub container_usage: Option<Spread>,
    /// Per-container raw cgroup memory usage (with all page cache), bytes.
    pub container_usage_raw: Option<Spread>,
    /// dockerd RSS before and after, bytes.
    pub dockerd_rss: (Option<u64>, Option<u64>),
    /// containerd RSS before and after, bytes.
    pub containerd_rss: (Option<u64>, Option<u64>),
    /// containerd-shim processes after, and their summed RSS and PSS, bytes.
    pub shims: (usize, u64, u64),
}

/// Median, mean and max of a set of byte counts.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    /// Median.
    pub median: u64,
    /// Mean.
    pub mean: u64,
    /// Largest.
    pub max: u64,
    /// Sum.
    pub sum: u64,
}

impl Spread {
    /// Summarizes `v`; `None` when empty.
    pub fn of(mut v: Vec<u64>) -> Option<Spread> {
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let sum: u64 = v.iter().sum();
        Some(Spread {
            median: v[v.len() / 2],
            mean: sum / v.len() as u64,
            max: *v.last().expect("non-empty"),
            sum,
        })
    }
}

/// A target of the issue, checked against what was measured.
#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    /// What the target says.
    pub name: String,
    /// What was measured, with its unit.
    pub measured: String,
    /// The bound.
    pub target: String,
    /// Met, missed, or not measured.
    pub status: String,
}

/// The machine the run happened on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    /// Online CPUs.
    pub cpus: usize,
    /// CPU model.
    pub cpu_model: String,
    /// Total memory, bytes.
    pub memory_bytes: u64,
    /// Kernel release.
    pub kernel: String,
    /// Docker Engine version and API version.
    pub docker: Option<String>,
}

impl Machine {
    /// Reads `/proc`.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: cpuinfo
                .lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .unwrap_or("")
                .trim()
                .to_string(),
            memory_bytes: meminfo
                .lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            docker: None,
        }
    }
}

/// Everything one suite run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The run's id.
    pub run_id: String,
    /// Seconds since the Unix epoch at the start.
    pub started_unix: u64,
    /// Where it ran.
    pub machine: Machine,
    /// Warm-up and window of each load run, seconds.
    pub warmup_s: f64,
    /// Measured window of each load run, seconds.
    pub duration_s: f64,
    /// Load runs, in the order they ran.
    pub runs: Vec<RunResult>,
    /// Cold-start series.
    pub cold_start: Vec<ColdResult>,
    /// Many-tenants memory, when it ran.
    pub tenants: Option<TenantsResult>,
    /// Things that could not be run, and why.
    pub skipped: Vec<String>,
    /// Wall time of each part of the run, seconds.
    pub phases: Vec<(String, f64)>,
}

/// Formats microseconds for humans.
pub fn fmt_us(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}

/// Formats bytes as MiB.
pub fn fmt_mib(b: u64) -> String {
    format!("{:.2} MiB", b as f64 / (1024.0 * 1024.0))
}

/// The header of the terminal table.
pub fn table_header() -> String {
    format!(
        "{:<11} {:<14} {:>5} {:>10} {:>9} {:>9} {:>9} {:>9} {:>6} {:>9}",
        "scenario", "target", "conns", "req/s", "p50", "p90", "p99", "max", "errors", "cpu/req"
    )
}

/// One row of the terminal table.
pub fn table_row(r: &RunResult) -> String {
    let l = &r.latency;
    format!(
        "{:<11} {:<14} {:>5} {:>10.0} {:>9} {:>9} {:>9} {:>9} {:>6} {:>9}",
        r.scenario,
        r.target,
        r.connections,
        r.throughput,
        fmt_us(l.p50_us as f64),
        fmt_us(l.p90_us as f64),
        fmt_us(l.p99_us as f64),
        fmt_us(l.max_us as f64),
        r.errors,
        r.cpu_per_request().map_or("-".into(), |(us, _)| fmt_us(us)),
    )
}

impl Report {
    /// The best (highest throughput) run of a scenario on a target.
    fn best(&self, scenario: &str, target: &str) -> Option<&RunResult> {
        self.runs
            .iter()
            .filter(|r| r.scenario == scenario && r.target == target && r.requests > 0)
            .max_by(|a, b| a.throughput.total_cmp(&b.throughput))
    }

    /// The run of a scenario on a target at `conns` connections.
    fn at(&self, scenario: &str, target: &str, conns: usize) -> Option<&RunResult> {
        self.runs
            .iter()
            .find(|r| r.scenario == scenario && r.target == target && r.connections == conns)
    }

    /// Ratios that hold on a noisy machine, since both sides ran together.
    pub fn ratios(&self) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        let mut push = |name: String, a: Option<&RunResult>, b: Option<&RunResult>| {
            if let (Some(a), Some(b)) = (a, b) {
                if b.throughput > 0.0 && a.requests > 0 {
                    out.push((name, a.throughput / b.throughput));
                }
            }
        };
        for scenario in ["point-read", "insert", "insert-100", "mix-90-10"] {
            for r in self
                .runs
                .iter()
                .filter(|r| r.scenario == scenario && r.target == "gateway")
            {
                push(
                    format!("{scenario} @{}: gateway / baseline-http", r.connections),
                    Some(r),
                    self.at(scenario, "baseline-http", r.connections),
                );
            }
            push(
                format!("{scenario}, best of each: gateway / inproc"),
                self.best(scenario, "gateway"),
                self.best(scenario, "inproc"),
            );
            push(
                format!("{scenario}, best of each: baseline-http / inproc"),
                self.best(scenario, "baseline-http"),
                self.best(scenario, "inproc"),
            );
        }
        push(
            "point-read, best of each: gateway / datasette".into(),
            self.best("point-read", "gateway"),
            self.best("point-read", "datasette"),
        );
        push(
            "point-read, best of each: baseline-http / datasette".into(),
            self.best("point-read", "baseline-http"),
            self.best("point-read", "datasette"),
        );
        push(
            "point-read, best of each: gateway / exec-naive".into(),
            self.best("point-read", "gateway"),
            self.best("point-read", "exec-naive"),
        );
        push(
            "point-read, best of each: gateway / exec-warm".into(),
            self.best("point-read", "gateway"),
            self.best("point-read", "exec-warm"),
        );
        out
    }

    /// The targets, checked.
    pub fn targets(&self) -> Vec<TargetCheck> {
        let mut out = Vec::new();
        let mut check = |name: &str,
                         target: &str,
                         measured: Option<(f64, String)>,
                         ok: &dyn Fn(f64) -> bool| {
            out.push(TargetCheck {
                name: name.to_string(),
                target: target.to_string(),
                status: match &measured {
                    Some((v, _)) if ok(*v) => "met".into(),
                    Some(_) => "MISSED".into(),
                    None => "not measured".into(),
                },
                measured: measured.map_or("-".into(), |(_, s)| s),
            });
        };
        let gw_read64 = self
            .at("point-read", "gateway", 64)
            .filter(|r| r.requests > 0);
        check(
            "point reads @64, full path",
            ">= 20 000 req/s",
            gw_read64.map(|r| (r.throughput, format!("{:.0} req/s", r.throughput))),
            &|v| v >= 20_000.0,
        );
        check(
            "point reads @64, p99",
            "< 10 ms",
            gw_read64.map(|r| (r.latency.p99_us as f64, fmt_us(r.latency.p99_us as f64))),
            &|v| v < 10_000.0,
        );
        let base64 = self
            .at("point-read", "baseline-http", 64)
            .filter(|r| r.requests > 0);
        check(
            "point reads @64 vs in-process hyper+rusqlite @64",
            ">= 0.4",
            gw_read64.zip(base64).map(|(g, b)| {
                (
                    g.throughput / b.throughput,
                    format!("{:.3}", g.throughput / b.throughput),
                )
            }),
            &|v| v >= 0.4,
        );
        let ds = self.best("point-read", "datasette");
        check(
            "point reads @64 vs Datasette's best",
            ">= 10x",
            gw_read64.zip(ds).map(|(g, d)| {
                (
                    g.throughput / d.throughput,
                    format!("{:.1}x", g.throughput / d.throughput),
                )
            }),
            &|v| v >= 10.0,
        );
        let ins64 = self.at("insert", "gateway", 64).filter(|r| r.requests > 0);
        check(
            "single-row inserts @64, synchronous=FULL",
            ">= 5 000/s",
            ins64.map(|r| (r.throughput, format!("{:.0}/s", r.throughput))),
            &|v| v >= 5_000.0,
        );
        let cold = self
            .cold_start
            .iter()
            .find(|c| c.target == "gateway" && c.samples > 0);
        check(
            "cold start, spawn + first answer, p50",
            "< 300 ms",
            cold.map(|c| (c.latency.p50_us as f64, fmt_us(c.latency.p50_us as f64))),
            &|v| v < 300_000.0,
        );
        let t = self.tenants.as_ref();
        check(
            "idle database, its container (median)",
            "< 2 MiB",
            t.and_then(|t| t.container_usage)
                .map(|s| (s.median as f64, fmt_mib(s.median))),
            &|v| v < 2.0 * 1024.0 * 1024.0,
        );
        check(
            "gateway RSS with 200 databases",
            "< 50 MiB",
            t.and_then(|t| t.gateway_rss_after.map(|b| (b, t.databases)))
                .map(|(b, n)| (b as f64, format!("{} with {n} databases", fmt_mib(b)))),
            &|v| v < 50.0 * 1024.0 * 1024.0,
        );
        if let (Some(t), Some(last)) = (t, out.last_mut()) {
            if t.databases < 200 && last.status != "not measured" {
                last.status = format!("{} (fewer than 200 databases)", last.status);
            }
        }
        out
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let _ = writeln!(s, "# DB-Forge benchmark results (run {})\n", self.run_id);
        let _ = writeln!(
            s,
            "Machine: {} CPUs ({}), {:.1} GiB, kernel {}, Docker {}. Each load run: {:.0} s warm-up (not counted), {:.0} s measured, closed loop.\n",
            m.cpus,
            m.cpu_model,
            m.memory_bytes as f64 / (1u64 << 30) as f64,
            m.kernel,
            m.docker.as_deref().unwrap_or("n/a"),
            self.warmup_s,
            self.duration_s
        );
        let _ = writeln!(s, "## Load runs\n");
        let _ = writeln!(
            s,
            "CPU/req is the whole machine's busy CPU time per counted request; \
             *other load* is the CPU share (of all cores) taken by processes that are \
             not part of the run (builds, other tests): the noise the run suffered.\n"
        );
        let _ = writeln!(
            s,
            "| scenario | target | conns | req/s | rows/s | p50 | p90 | p99 | max | errors | CPU/req (machine) | other load | top CPU per request |"
        );
        let _ = writeln!(
            s,
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        // Grouped by scenario and target in order of first appearance (the
        // suite interleaves targets; the table reads better grouped).
        let first = |f: &dyn Fn(&RunResult) -> bool| self.runs.iter().position(f).unwrap_or(0);
        let mut rows: Vec<&RunResult> = self.runs.iter().collect();
        rows.sort_by_key(|r| {
            (
                first(&|x| x.scenario == r.scenario),
                first(&|x| x.scenario == r.scenario && x.target == r.target),
                r.connections,
            )
        });
        for r in rows {
            let l = &r.latency;
            let other = r.cpu.as_ref().map_or("-".into(), |c| {
                let cores = self.machine.cpus.max(1) as f64;
                format!("{:.0} %", 100.0 * c.other_s() / (r.window_s * cores))
            });
            let (cpu, top) = match r.cpu_per_request() {
                Some((us, top)) => (
                    fmt_us(us),
                    top.iter()
                        .map(|(c, us)| format!("{c} {}", fmt_us(*us)))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                None => ("-".into(), String::new()),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.scenario,
                r.target,
                r.connections,
                r.throughput,
                r.rows_per_s.map_or("".into(), |x| format!("{x:.0}")),
                fmt_us(l.p50_us as f64),
                fmt_us(l.p90_us as f64),
                fmt_us(l.p99_us as f64),
                fmt_us(l.max_us as f64),
                r.errors,
                cpu,
                other,
                top
            );
        }
        let errors: Vec<&RunResult> = self
            .runs
            .iter()
            .filter(|r| r.first_error.is_some())
            .collect();
        if !errors.is_empty() {
            let _ = writeln!(s, "\nFirst error of runs that had errors:\n");
            for r in errors {
                let _ = writeln!(
                    s,
                    "- {} / {} @{}: `{}`",
                    r.scenario,
                    r.target,
                    r.connections,
                    r.first_error.as_deref().unwrap_or("").replace('`', "'")
                );
            }
        }
        if !self.cold_start.is_empty() {
            let _ = writeln!(s, "\n## Cold start\n");
            let _ = writeln!(
                s,
                "| target | what | samples | p50 | p99 | max | spawn call alone p50 / p99 |"
            );
            let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---|");
            for c in &self.cold_start {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    c.target,
                    c.what,
                    c.samples,
                    fmt_us(c.latency.p50_us as f64),
                    fmt_us(c.latency.p99_us as f64),
                    fmt_us(c.latency.max_us as f64),
                    c.spawn_only.map_or("".into(), |l| format!(
                        "{} / {}",
                        fmt_us(l.p50_us as f64),
                        fmt_us(l.p99_us as f64)
                    )),
                );
            }
        }
        if let Some(t) = &self.tenants {
            let _ = writeln!(s, "\n## Many tenants\n");
            let opt = |b: Option<u64>| b.map_or("-".into(), fmt_mib);
            let spread = |x: &Option<Spread>| {
                x.map_or("-".into(), |s| {
                    format!(
                        "median {}, mean {}, max {}, sum {}",
                        fmt_mib(s.median),
                        fmt_mib(s.mean),
                        fmt_mib(s.max),
                        fmt_mib(s.sum)
                    )
                })
            };
            let _ = writeln!(s, "| what | value |\n|---|---|");
            let _ = writeln!(
                s,
                "| databases spawned / answered | {} / {} |",
                t.databases, t.answered
            );
            let _ = writeln!(
                s,
                "| spawn wall time (concurrency {}) | {:.1} s |",
                t.spawn_concurrency, t.spawn_wall_s
            );
            let _ = writeln!(
                s,
                "| gateway RSS before / with all | {} / {} |",
                opt(t.gateway_rss_before),
                opt(t.gateway_rss_after)
            );
            let _ = writeln!(
                s,
                "| container memory, as `docker stats` shows it | {} |",
                spread(&t.container_usage)
            );
            let _ = writeln!(
                s,
                "| container memory, raw cgroup usage (with page cache) | {} |",
                spread(&t.container_usage_raw)
            );
            let _ = writeln!(
                s,
                "| dockerd RSS before / after | {} / {} |",
                opt(t.dockerd_rss.0),
                opt(t.dockerd_rss.1)
            );
            let _ = writeln!(
                s,
                "| containerd RSS before / after | {} / {} |",
                opt(t.containerd_rss.0),
                opt(t.containerd_rss.1)
            );
            let _ = writeln!(
                s,
                "| containerd-shim: processes, RSS sum, PSS sum | {}, {}, {} |",
                t.shims.0,
                fmt_mib(t.shims.1),
                fmt_mib(t.shims.2)
            );
        }
        let ratios = self.ratios();
        if !ratios.is_empty() {
            let _ = writeln!(
                s,
                "\n## Ratios (same run)\n\n| ratio of throughputs | value |\n|---|---:|"
            );
            for (name, v) in ratios {
                let _ = writeln!(s, "| {name} | {v:.3} |");
            }
        }
        let _ = writeln!(
            s,
            "\n## Targets\n\n| target | bound | measured | status |\n|---|---|---|---|"
        );
        for t in self.targets() {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                t.name, t.target, t.measured, t.status
            );
        }
        if !self.phases.is_empty() {
            let total: f64 = self.phases.iter().map(|(_, t)| t).sum();
            let list: Vec<String> = self
                .phases
                .iter()
                .map(|(p, t)| format!("{p} {t:.0} s"))
                .collect();
            let _ = writeln!(s, "\nWall time: {total:.0} s ({}).", list.join(", "));
        }
        if !self.skipped.is_empty() {
            let _ = writeln!(s, "\n## Not run\n");
            for x in &self.skipped {
                let _ = writeln!(s, "- {x}");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::new_histogram;
    use std::time::Duration;

    fn run(scenario: &str, target: &str, conns: usize, n: u64, lat_us: u64) -> RunResult {
        let mut hist = new_histogram();
        for _ in 0..n {
            hist.record(lat_us).unwrap();
        }
        RunResult::new(
            scenario,
            target,
            conns,
            None,
            Measured {
                hist,
                errors: 0,
                first_error: None,
                window: Duration::from_secs(1),
                cpu: None,
            },
        )
    }

    #[test]
    fn targets_and_ratios_use_same_run_numbers() {
        let report = Report {
            runs: vec![
                run("point-read", "gateway", 64, 25_000, 2_000),
                run("point-read", "baseline-http", 64, 50_000, 1_000),
                run("point-read", "datasette", 8, 1_000, 8_000),
            ],
            ..Default::default()
        };
        let t = report.targets();
        assert_eq!(t[0].status, "met");
        assert_eq!(t[2].measured, "0.500");
        assert_eq!(t[3].measured, "25.0x");
        assert_eq!(t[4].status, "not measured");
        let r = report.ratios();
        assert!(r
            .iter()
            .any(|(n, v)| n.contains("@64: gateway / baseline-http") && (*v - 0.5).abs() < 1e-9));
        let md = report.markdown();
        assert!(md.contains("| point-read | gateway | 64 | 25000 |"));
    }
}
