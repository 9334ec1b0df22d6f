//! Where the CPU went during a run: per-process CPU time from `/proc`, grouped
//! by command name, plus the whole machine's busy time.
//!
//! On this kind of host the gateway's cost is spread over several processes
//! (the gateway, dockerd, containerd-shim, the worker), so a per-request CPU
//! budget by process is the first, cheapest profile of the hot path.
//! Processes that start and end inside the window (a naive `docker exec`'s
//! runc) are missing from the per-process figures but not from the total.

use std::collections::HashMap;
use std::fs;

use serde::Serialize;

/// Kernel clock ticks per second for `/proc` CPU times (`USER_HZ`, 100 on
/// every Linux architecture this runs on).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU counters at one instant.
#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    /// Per process: (command name, user + system ticks).
    procs: HashMap<u32, (String, u64)>,
    /// Machine-wide (busy, idle) ticks, all CPUs together.
    machine: (u64, u64),
}

/// CPU used between two snapshots.
#[derive(Debug, Clone, Serialize)]
pub struct CpuUsage {
    /// Busy CPU-seconds of the whole machine (all cores).
    pub machine_busy_s: f64,
    /// Idle CPU-seconds of the whole machine.
    pub machine_idle_s: f64,
    /// CPU-seconds per command name, largest first.
    pub by_command: Vec<(String, f64)>,
}

/// Processes that a benchmark run itself makes busy: the load generator,
/// the servers, Docker's daemons and shims, the workers, and the kernel
/// threads that move their packets and pages. Everything else on the
/// machine is noise (another build, another test run).
const PART_OF_THE_RUN: &[&str] = &[
    "dbforge-bench",
    "baseline-server",
    "dbforge-gateway",
    "dockerd",
    "containerd",
    "containerd-shim",
    "runc",
    "runc:[2:INIT]",
    "dbforge-worker",
    "python",
    "python3",
    "kworker",
    "ksoftirqd/0",
    "ksoftirqd/1",
    "perf",
];

impl CpuUsage {
    /// CPU-seconds of processes that are not part of the run.
    pub fn other_s(&self) -> f64 {
        self.by_command
            .iter()
            .filter(|(c, _)| !PART_OF_THE_RUN.contains(&c.as_str()))
            .map(|(_, s)| s)
            .sum()
    }
}

impl CpuSnapshot {
    /// Reads `/proc`; `None` where it cannot be read.
    pub fn take() -> Option<CpuSnapshot> {
        let machine = read_machine()?;
        let mut procs = HashMap::new();
        for entry in fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(p) = read_proc(pid) {
                procs.insert(pid, p);
            }
        }
        Some(CpuSnapshot { procs, machine })
    }

    /// The CPU used from `earlier` to `self`.
    pub fn since(&self, earlier: &CpuSnapshot) -> CpuUsage {
        let mut by: HashMap<&str, u64> = HashMap::new();
        for (pid, (comm, ticks)) in &self.procs {
            let before = match earlier.procs.get(pid) {
                Some((c, t)) if c == comm => *t,
                // Started during the window: all of its time is inside it.
                _ => 0,
            };
            *by.entry(group(comm)).or_default() += ticks.saturating_sub(before);
        }
        let mut by_command: Vec<(String, f64)> = by
            .into_iter()
            .filter(|(_, t)| *t > 0)
            .map(|(c, t)| (c.to_string(), t as f64 / TICKS_PER_SEC))
            .collect();
        by_command.sort_by(|a, b| b.1.total_cmp(&a.1));
        CpuUsage {
            machine_busy_s: self.machine.0.saturating_sub(earlier.machine.0) as f64 / TICKS_PER_SEC,
            machine_idle_s: self.machine.1.saturating_sub(earlier.machine.1) as f64 / TICKS_PER_SEC,
            by_command,
        }
    }
}

/// Kernel worker threads carry their current job in their name
/// (`kworker/u8:1-events_unbound`): counted together as `kworker`.
fn group(comm: &str) -> &str {
    if comm.starts_with("kworker/") {
        "kworker"
    } else {
        comm
    }
}

/// `/proc/stat`'s first line: (busy, idle) ticks over all CPUs.
fn read_machine() -> Option<(u64, u64)> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    let busy = v.iter().take(8).sum::<u64>() - idle;
    Some((busy, idle))
}

/// One process's (command name, utime + stime).
fn read_proc(pid: u32) -> Option<(String, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command sits in parentheses and may itself contain spaces or ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After the command: state(0) ... utime(11) stime(12).
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// Resident and proportional memory of one process, in bytes.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ProcMemory {
    /// VmRSS: pages resident, shared ones counted in full.
    pub rss: u64,
    /// Pss: shared pages divided among the processes that share them.
    pub pss: u64,
}

/// Memory of process `pid`, from `/proc/PID/smaps_rollup`.
pub fn proc_memory(pid: u32) -> Option<ProcMemory> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some(ProcMemory {
        rss: field("Rss:")?,
        pss: field("Pss:")?,
    })
}

/// Pids whose command name is `comm` (as in `/proc/PID/comm`, at most 15 bytes).
pub fn pids_by_command(comm: &str) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == comm)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_see_this_process_burn_cpu() {
        let a = CpuSnapshot::take().expect("/proc is readable");
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(200) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let b = CpuSnapshot::take().unwrap();
        let u = b.since(&a);
        assert!(u.machine_busy_s >= 0.1, "{u:?}");
        assert!(!u.by_command.is_empty());
        let me = proc_memory(std::process::id()).unwrap();
        assert!(me.rss > 0 && me.pss > 0);
    }
}
