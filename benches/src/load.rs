//! The closed-loop load engine: N callers, each issuing one request after
//! another for a fixed time, with a warm-up that is not counted.
//!
//! A *caller* is one connection (an HTTP keep-alive connection, an exec
//! session, a Docker client). The engine knows nothing about what a call does:
//! it times it, counts it, and merges every caller's HDR histogram at the end.
//!
//! What is counted: a call that starts after the warm-up and ends before the
//! deadline. Throughput is that count divided by the measured window.

use std::future::Future;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::cpu::CpuSnapshot;

/// Lowest latency the histograms resolve: 1 µs.
const HIST_LOW_US: u64 = 1;
/// Highest latency the histograms hold: 120 s (a naive exec under load can
/// take seconds; anything longer is clamped, never dropped).
const HIST_HIGH_US: u64 = 120_000_000;
/// Three significant figures: 0.1 % resolution at every scale.
const HIST_SIGFIG: u8 = 3;
/// After a failed call a caller pauses this long, so a refused connection
/// cannot turn into a busy loop that starves the server being measured.
const ERROR_BACKOFF: Duration = Duration::from_millis(5);
/// A call still unanswered this long after the window ends is abandoned, so
/// a run always ends even if the server under test hangs.
const CALL_GRACE: Duration = Duration::from_secs(30);

/// A fresh, empty latency histogram in microseconds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(HIST_LOW_US, HIST_HIGH_US, HIST_SIGFIG)
        .expect("static histogram bounds are valid")
}

/// Records one latency, clamped into the histogram's range.
pub fn record(hist: &mut Histogram<u64>, latency: Duration) {
    let us = (latency.as_micros() as u64).clamp(HIST_LOW_US, HIST_HIGH_US);
    hist.record(us).expect("value was clamped into range");
}

/// How long a run lasts.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Calls made during this first part are not counted: connections open,
    /// caches and pools fill, the CPU frequency settles.
    pub warmup: Duration,
    /// The measured window that follows the warm-up.
    pub duration: Duration,
}

/// One caller: makes one call at a time, back to back (a closed loop).
pub trait Caller: Send + 'static {
    /// Makes one call and waits for its full answer.
    fn call(&mut self) -> impl Future<Output = Result<(), String>> + Send;
}

/// What one run measured.
#[derive(Debug)]
pub struct Measured {
    /// Latency of every counted call, in microseconds.
    pub hist: Histogram<u64>,
    /// Failed calls inside the measured window.
    pub errors: u64,
    /// The first failure's message, to say what went wrong.
    pub first_error: Option<String>,
    /// Length of the measured window.
    pub window: Duration,
    /// CPU time per process group during the measured window.
    pub cpu: Option<crate::cpu::CpuUsage>,
}

impl Measured {
    /// Counted calls per second.
    pub fn throughput(&self) -> f64 {
        self.hist.len() as f64 / self.window.as_secs_f64()
    }
}

/// Runs every caller in a closed loop on the current Tokio runtime.
pub async fn run_closed_loop<C: Caller>(callers: Vec<C>, timing: Timing) -> Measured {
    let start = Instant::now();
    let measure_from = start + timing.warmup;
    let end = measure_from + timing.duration;
    let cpu_probe = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let before = CpuSnapshot::take();
        tokio::time::sleep_until(end.into()).await;
        let after = CpuSnapshot::take();
        before.zip(after).map(|(b, a)| a.since(&b))
    });
    let mut tasks = Vec::with_capacity(callers.len());
    for mut caller in callers {
        tasks.push(tokio::spawn(async move {
            let mut hist = new_histogram();
            let mut errors = 0u64;
            let mut first_error = None;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let outcome = tokio::time::timeout_at((end + CALL_GRACE).into(), caller.call())
                    .await
                    .unwrap_or_else(|_| Err("no answer before the run's deadline".to_string()));
                let t1 = Instant::now();
                let counted = t0 >= measure_from && t1 <= end;
                match outcome {
                    Ok(()) if counted => record(&mut hist, t1 - t0),
                    Ok(()) => {}
                    Err(e) => {
                        if counted {
                            errors += 1;
                            first_error.get_or_insert(e);
                        }
                        tokio::time::sleep(ERROR_BACKOFF).await;
                    }
                }
            }
            (hist, errors, first_error)
        }));
    }
    let mut hist = new_histogram();
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok((h, e, f)) => {
                hist.add(h).expect("same bounds");
                errors += e;
                if first_error.is_none() {
                    first_error = f;
                }
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("caller task failed: {e}"));
            }
        }
    }
    Measured {
        hist,
        errors,
        first_error,
        window: timing.duration,
        cpu: cpu_probe.await.ok().flatten(),
    }
}

/// Runs `threads` OS threads, each calling its closure back to back: the same
/// closed loop for work that blocks (in-process SQLite).
pub fn run_closed_loop_blocking<F>(callers: Vec<F>, timing: Timing) -> Measured
where
    F: FnMut() -> Result<(), String> + Send + 'static,
{
    let start = Instant::now();
    let measure_from = start + timing.warmup;
    let end = measure_from + timing.duration;
    let handles: Vec<_> = callers
        .into_iter()
        .map(|mut call| {
            std::thread::spawn(move || {
                let mut hist = new_histogram();
                let mut errors = 0u64;
                let mut first_error = None;
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let outcome = call();
                    let t1 = Instant::now();
                    let counted = t0 >= measure_from && t1 <= end;
                    match outcome {
                        Ok(()) if counted => record(&mut hist, t1 - t0),
                        Ok(()) => {}
                        Err(e) => {
                            if counted {
                                errors += 1;
                                first_error.get_or_insert(e);
                            }
                            std::thread::sleep(ERROR_BACKOFF);
                        }
                    }
                }
                (hist, errors, first_error)
            })
        })
        .collect();
    std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
    let before = CpuSnapshot::take();
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let after = CpuSnapshot::take();
    let mut hist = new_histogram();
    let mut errors = 0;
    let mut first_error = None;
    for handle in handles {
        match handle.join() {
            Ok((h, e, f)) => {
                hist.add(h).expect("same bounds");
                errors += e;
                if first_error.is_none() {
                    first_error = f;
                }
            }
            Err(_) => {
                errors += 1;
                first_error.get_or_insert_with(|| "caller thread panicked".to_string());
            }
        }
    }
    Measured {
        hist,
        errors,
        first_error,
        window: timing.duration,
        cpu: before.zip(after).map(|(b, a)| a.since(&b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone)]
    struct Sleeper(Duration);

    impl Caller for Sleeper {
        async fn call(&mut self) -> Result<(), String> {
            tokio::time::sleep(self.0).await;
            Ok(())
        }
    }

    #[tokio::test]
    async fn counts_only_the_measured_window() {
        let timing = Timing {
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(300),
        };
        let m = run_closed_loop(vec![Sleeper(Duration::from_millis(10)); 2], timing).await;
        // ~30 calls per caller in 300 ms; the warm-up's ~10 are not counted.
        let n = m.hist.len();
        assert!((30..=62).contains(&n), "counted {n}");
        assert_eq!(m.errors, 0);
        assert!(m.hist.value_at_quantile(0.5) >= 10_000);
    }

    #[test]
    fn blocking_loop_counts_errors() {
        let timing = Timing {
            warmup: Duration::ZERO,
            duration: Duration::from_millis(50),
        };
        let m = run_closed_loop_blocking(vec![|| Err::<(), _>("no".to_string())], timing);
        assert_eq!(m.hist.len(), 0);
        assert!(m.errors > 0);
        assert_eq!(m.first_error.as_deref(), Some("no"));
    }
}
