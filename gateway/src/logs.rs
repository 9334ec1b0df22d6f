//! Request logs without a system call or a thread wake-up per request.
//!
//! Every request is logged. Writing each line to stderr costs a `write(2)`;
//! handing it to a logging thread costs a wake-up of that thread, which on a
//! lightly loaded VM is dearer still. Instead, lines are appended to a shared
//! buffer (a memcpy under a lock) and a background task writes the buffer out
//! every [`FLUSH_INTERVAL`], or at once when it is full.

use std::io::{self, BufWriter, Stderr, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long a log line may wait in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// Buffer size: written out when full, whatever the interval.
const BUFFER_BYTES: usize = 64 * 1024;

/// A buffered stderr shared by every thread; see the module documentation.
#[derive(Clone)]
pub struct BatchedStderr {
    inner: Arc<Mutex<BufWriter<Stderr>>>,
}

impl Default for BatchedStderr {
    fn default() -> Self {
        BatchedStderr {
            inner: Arc::new(Mutex::new(BufWriter::with_capacity(
                BUFFER_BYTES,
                io::stderr(),
            ))),
        }
    }
}

impl BatchedStderr {
    /// Writes out what is buffered.
    pub fn flush(&self) {
        let _ = self.lock().flush();
    }

    /// Flushes every [`FLUSH_INTERVAL`] until the runtime stops.
    pub fn spawn_flusher(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_INTERVAL);
            loop {
                tick.tick().await;
                this.flush();
            }
        });
    }

    fn lock(&self) -> MutexGuard<'_, BufWriter<Stderr>> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One log line's access to the buffer.
pub struct LineWriter<'a>(MutexGuard<'a, BufWriter<Stderr>>);

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Lines are flushed by the background task, not one by one.
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedStderr {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(self.lock())
    }
}
