//! A system-wide CPU profile of a load run's measured window, with `perf`:
//! the gateway's hot path spans several processes (gateway, dockerd,
//! containerd-shim, worker), so only a whole-machine profile shows it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::load::Timing;

/// Sampling frequency: odd, so it does not beat with periodic work.
const PERF_FREQ: &str = "499";

/// Starts `perf record -a` after the warm-up, for the measured window,
/// writing `path`. Resolves to an error message if perf could not run.
pub fn during(path: &Path, timing: Timing) -> tokio::task::JoinHandle<Result<PathBuf, String>> {
    let path = path.to_path_buf();
    tokio::spawn(async move {
        tokio::time::sleep(timing.warmup).await;
        let secs = format!("{:.1}", timing.duration.as_secs_f64());
        let out = tokio::process::Command::new("perf")
            .args(["record", "-a", "-F", PERF_FREQ, "-o"])
            .arg(&path)
            .args(["--", "sleep", &secs])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(timing.duration + Duration::from_secs(30), out).await {
            Ok(Ok(o)) if o.status.success() => Ok(path),
            Ok(Ok(o)) => Err(format!(
                "perf: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Ok(Err(e)) => Err(format!("perf: {e}")),
            Err(_) => Err("perf did not finish".into()),
        }
    })
}
