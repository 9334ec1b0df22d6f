//! A system-wide CPU profile of a load run's measured window, with `perf`:
//! the gateway's hot path spans several processes (gateway, dockerd,
//! containerd-shim, worker), so only a whole-machine profile shows it.
//! Next to the samples, `perf stat` counts context switches and system calls
//! (software events, which work where hardware counters do not), to put a
//! number on what each request costs the kernel.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::load::Timing;

/// Sampling frequency: odd, so it does not beat with periodic work.
const PERF_FREQ: &str = "499";
/// Software events counted machine-wide during the window.
const COUNTED: &str = "context-switches,cpu-migrations,raw_syscalls:sys_enter";

/// What a profiled window left behind.
#[derive(Debug)]
pub struct Profile {
    /// `perf record` samples, for `perf report`.
    pub samples: PathBuf,
    /// Machine-wide event counts of the window: (event, count).
    pub counts: Vec<(String, u64)>,
}

/// Starts `perf record -a` and `perf stat -a` after the warm-up, for the
/// measured window; samples go to `path`, counts to `path.stat`.
pub fn during(path: &Path, timing: Timing) -> tokio::task::JoinHandle<Result<Profile, String>> {
    let path = path.to_path_buf();
    tokio::spawn(async move {
        tokio::time::sleep(timing.warmup).await;
        let secs = format!("{:.1}", timing.duration.as_secs_f64());
        let mut stat_path = path.as_os_str().to_owned();
        stat_path.push(".stat");
        let record = perf(&["record", "-a", "-F", PERF_FREQ, "-o"], &path, &secs);
        let stat = perf(
            &["stat", "-a", "-x", ",", "-e", COUNTED, "-o"],
            Path::new(&stat_path),
            &secs,
        );
        let limit = timing.duration + Duration::from_secs(30);
        let (record, stat) = tokio::time::timeout(limit, async { tokio::join!(record, stat) })
            .await
            .map_err(|_| "perf did not finish".to_string())?;
        record?;
        // Counts are a bonus: a kernel without tracepoints still profiles.
        let counts = match stat {
            Ok(()) => parse_stat(&std::fs::read_to_string(&stat_path).unwrap_or_default()),
            Err(_) => Vec::new(),
        };
        Ok(Profile {
            samples: path,
            counts,
        })
    })
}

/// Runs `perf ARGS OUT -- sleep SECS`.
async fn perf(args: &[&str], out: &Path, secs: &str) -> Result<(), String> {
    let o = tokio::process::Command::new("perf")
        .args(args)
        .arg(out)
        .args(["--", "sleep", secs])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("perf: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "perf {}: {}",
            args[0],
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// Reads `perf stat -x ,` output: `count,unit,event,...` per line.
fn parse_stat(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split(',');
            let count = f.next()?.trim().parse::<u64>().ok()?;
            let event = f.nth(1)?.trim().to_string();
            Some((event, count))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_perf_stat_csv() {
        let text = "# started on x\n\n1234,,context-switches,8001,100.00,,\n<not counted>,,cpu-migrations,0,0.00,,\n99,,raw_syscalls:sys_enter,8001,100.00,,\n";
        assert_eq!(
            parse_stat(text),
            vec![
                ("context-switches".to_string(), 1234),
                ("raw_syscalls:sys_enter".to_string(), 99)
            ]
        );
    }
}
