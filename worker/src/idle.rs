//! The container's main process: waits for the signal to stop.
//!
//! As PID 1 of a container, a process gets no default action for SIGTERM:
//! without a handler `docker stop` waits its whole timeout (10 s) and then
//! kills it. Here SIGTERM and SIGINT are blocked and taken with `sigwait`, so
//! the process sleeps in one system call (no CPU, no wake-ups) and exits 0 the
//! moment either arrives.

use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};

/// Blocks until SIGTERM or SIGINT arrives; returns which.
pub fn wait_for_stop() -> nix::Result<Signal> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    set.wait()
}
