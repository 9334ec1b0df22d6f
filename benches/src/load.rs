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

/// The start of the measured window and its end.
#[derive(Clone, Copy)]
struct Window {
    from: Instant,
    end: Instant,
}

impl Window {
    /// The window of a run starting now.
    fn starting_now(timing: Timing) -> Window {
        let from = Instant::now() + timing.warmup;
        Window {
            from,
            end: from + timing.duration,
        }
    }
}

/// What one caller (or all of them, merged) counted.
struct Tally {
    hist: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            hist: new_histogram(),
            errors: 0,
            first_error: None,
        }
    }

    /// Counts a call that ran from `t0` to `t1` if it lies in the window;
    /// returns whether it failed (the caller then backs off).
    fn add_call(
        &mut self,
        w: Window,
        t0: Instant,
        t1: Instant,
        outcome: Result<(), String>,
    ) -> bool {
        let counted = t0 >= w.from && t1 <= w.end;
        match outcome {
            Ok(()) => {
                if counted {
                    record(&mut self.hist, t1 - t0);
                }
                false
            }
            Err(e) => {
                if counted {
                    self.errors += 1;
                    self.first_error.get_or_insert(e);
                }
                true
            }
        }
    }

    /// Adds one caller's tally, or the reason it has none.
    fn merge(&mut self, other: Result<Tally, String>) {
        match other {
            Ok(t) => {
                self.hist.add(t.hist).expect("same bounds");
                self.errors += t.errors;
                if self.first_error.is_none() {
                    self.first_error = t.first_error;
                }
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn measured(self, timing: Timing, cpu: Option<crate::cpu::CpuUsage>) -> Measured {
        Measured {
            hist: self.hist,
            errors: self.errors,
            first_error: self.first_error,
            window: timing.duration,
            cpu,
        }
    }
}

/// Runs every caller in a closed loop on the current Tokio runtime.
pub async fn run_closed_loop<C: Caller>(callers: Vec<C>, timing: Timing) -> Measured {
    let w = Window::starting_now(timing);
    let cpu_probe = tokio::spawn(async move {
        tokio::time::sleep_until(w.from.into()).await;
        let before = CpuSnapshot::take();
        tokio::time::sleep_until(w.end.into()).await;
        let after = CpuSnapshot::take();
        before.zip(after).map(|(b, a)| a.since(&b))
    });
    let tasks: Vec<_> = callers
        .into_iter()
        .map(|mut caller| {
            tokio::spawn(async move {
                let mut tally = Tally::new();
                loop {
                    let t0 = Instant::now();
                    if t0 >= w.end {
                        break;
                    }
                    let outcome =
                        tokio::time::timeout_at((w.end + CALL_GRACE).into(), caller.call())
                            .await
                            .unwrap_or_else(|_| {
                                Err("no answer before the run's deadline".to_string())
                            });
                    if tally.add_call(w, t0, Instant::now(), outcome) {
                        tokio::time::sleep(ERROR_BACKOFF).await;
                    }
                }
                tally
            })
        })
        .collect();
    let mut all = Tally::new();
    for task in tasks {
        all.merge(task.await.map_err(|e| format!("caller task failed: {e}")));
    }
    all.measured(timing, cpu_probe.await.ok().flatten())
}

/// Runs one OS thread per closure, each calling it back to back: the same
/// closed loop for work that blocks (in-process SQLite).
pub fn run_closed_loop_blocking<F>(callers: Vec<F>, timing: Timing) -> Measured
where
    F: FnMut() -> Result<(), String> + Send + 'static,
{
    let w = Window::starting_now(timing);
    let handles: Vec<_> = callers
        .into_iter()
        .map(|mut call| {
            std::thread::spawn(move || {
                let mut tally = Tally::new();
                loop {
                    let t0 = Instant::now();
                    if t0 >= w.end {
                        break;
                    }
                    let outcome = call();
                    if tally.add_call(w, t0, Instant::now(), outcome) {
                        std::thread::sleep(ERROR_BACKOFF);
                    }
                }
                tally
            })
        })
        .collect();
    std::thread::sleep(w.from.saturating_duration_since(Instant::now()));
    let before = CpuSnapshot::take();
    std::thread::sleep(w.end.saturating_duration_since(Instant::now()));
    let after = CpuSnapshot::take();
    let mut all = Tally::new();
    for handle in handles {
        all.merge(
            handle
                .join()
                .map_err(|_| "caller thread panicked".to_string()),
        );
    }
    all.measured(timing, before.zip(after).map(|(b, a)| a.since(&b)))
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
        // ~30 calls per caller in 300 ms (fewer on a loaded machine); the
        // warm-up's ~10 are not counted.
        let n = m.hist.len();
        assert!((10..=62).contains(&n), "counted {n}");
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
