//! One warm, pipelined session with a worker.
//!
//! Many requests may be in flight on a session at once. A writer task
//! coalesces every request queued at the moment into one write; a reader task
//! reassembles the worker's stdout into lines (frames are not lines) and
//! hands each answer to the oldest waiting caller, checking that its id is the
//! one expected: the worker answers in request order.
//!
//! When the worker's stdout ends or breaks (container stopped, worker
//! killed) or the worker says something that is not the protocol, the session
//! marks itself dead and fails every request in flight with
//! [`SessionError::Lost`]; the pool then replaces it.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use dbforge_protocol::{to_line, Hello, Op, Outcome, Request, Response, PROTOCOL_VERSION};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

use crate::runtime::SessionIo;

/// How long a new session may take to say hello. runc needs ~45 ms to start
/// the process on an idle host; a loaded host with hundreds of containers
/// can take seconds.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(15);

/// Most bytes coalesced into one write to the worker's stdin; bounds the
/// latency one large batch of requests adds to the next.
const MAX_WRITE_BYTES: usize = 1024 * 1024;

/// Capacity of the queue from callers to the writer task. Callers never
/// wait on it in practice: the pool bounds requests in flight per session.
const QUEUE_CAPACITY: usize = 1024;

/// Why a request on a session failed (the worker's own errors are answers,
/// not these).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SessionError {
    /// The session ended before answering; the request may or may not have
    /// run. Retryable on a new session.
    #[error("worker session lost: {0}")]
    Lost(String),
    /// No answer within the deadline; the session is declared stuck.
    #[error("no answer from the worker within {0:?}")]
    Timeout(Duration),
    /// The worker spoke something other than the protocol.
    #[error("worker protocol error: {0}")]
    Protocol(String),
}

type Reply = oneshot::Sender<Result<Outcome, SessionError>>;

struct Shared {
    /// Callers waiting for answers, oldest first, with the id each expects.
    pending: Mutex<VecDeque<(u64, Reply)>>,
    /// False once the session has ended; never true again.
    alive: AtomicBool,
    /// Why it ended, for the callers that come after.
    why_dead: Mutex<Option<String>>,
}

impl Shared {
    /// Marks the session dead and fails every caller still waiting.
    fn kill(&self, why: String) {
        self.alive.store(false, Ordering::SeqCst);
        let mut slot = self.why_dead.lock().unwrap();
        if slot.is_none() {
            *slot = Some(why.clone());
        }
        drop(slot);
        let waiting: Vec<_> = self.pending.lock().unwrap().drain(..).collect();
        for (_, reply) in waiting {
            let _ = reply.send(Err(SessionError::Lost(why.clone())));
        }
    }

    fn lost(&self) -> SessionError {
        SessionError::Lost(
            self.why_dead
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_else(|| "session closed".into()),
        )
    }
}

/// A handle to one worker session; dropping the last handle closes the
/// worker's stdin, which ends the worker.
pub struct Session {
    queue: mpsc::Sender<(Request, Reply)>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    hello: Hello,
}

impl Session {
    /// Waits for the worker's hello on `io`, checks its protocol version,
    /// and starts the session's reader and writer tasks.
    pub async fn start(io: SessionIo) -> Result<Session, SessionError> {
        let SessionIo { mut output, input } = io;
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let hello_line = tokio::time::timeout(HELLO_TIMEOUT, async {
            loop {
                if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    return Ok(buf.split_to(pos + 1));
                }
                match output.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => return Err(SessionError::Lost(e.to_string())),
                    None if buf.is_empty() => {
                        return Err(SessionError::Lost(
                            "the worker exited before saying hello".into(),
                        ))
                    }
                    // No newline before the end: what the runtime printed
                    // instead (e.g. "OCI runtime exec failed: ...").
                    None => return Ok(buf.split()),
                }
            }
        })
        .await
        .map_err(|_| SessionError::Timeout(HELLO_TIMEOUT))??;
        let hello: Hello = serde_json::from_slice(&hello_line).map_err(|_| {
            SessionError::Protocol(format!(
                "expected the worker's hello, got {:?}",
                String::from_utf8_lossy(&hello_line).trim_end()
            ))
        })?;
        if hello.protocol != PROTOCOL_VERSION {
            return Err(SessionError::Protocol(format!(
                "worker speaks protocol {}, the gateway {}",
                hello.protocol, PROTOCOL_VERSION
            )));
        }

        let shared = Arc::new(Shared {
            pending: Mutex::new(VecDeque::new()),
            alive: AtomicBool::new(true),
            why_dead: Mutex::new(None),
        });
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(write_loop(rx, input, shared.clone()));
        tokio::spawn(read_loop(output, buf, shared.clone()));
        Ok(Session {
            queue,
            shared,
            next_id: AtomicU64::new(1),
            hello,
        })
    }

    /// What the worker said when the session opened.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// Whether the session can still take requests.
    pub fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::SeqCst)
    }

    /// Sends one request and waits for its answer, at most `deadline`. Past
    /// the deadline the session is declared stuck and ended.
    pub async fn call(&self, op: Op, deadline: Duration) -> Result<Outcome, SessionError> {
        if !self.is_alive() {
            return Err(self.shared.lost());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.queue
            .send((Request { id, op }, tx))
            .await
            .map_err(|_| self.shared.lost())?;
        match tokio::time::timeout(deadline, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.shared.lost()),
            Err(_) => {
                self.shared
                    .kill(format!("request {id} got no answer within {deadline:?}"));
                Err(SessionError::Timeout(deadline))
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The writer task sees its queue close and shuts the worker's stdin.
        self.shared.alive.store(false, Ordering::SeqCst);
    }
}

async fn write_loop(
    mut rx: mpsc::Receiver<(Request, Reply)>,
    mut input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    shared: Arc<Shared>,
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        buf.clear();
        let mut next = Some(first);
        {
            // Register every caller before its bytes are written, in write
            // order, so the reader always finds the caller of an answer.
            let mut pending = shared.pending.lock().unwrap();
            while let Some((request, reply)) = next.take() {
                if !shared.alive.load(Ordering::SeqCst) {
                    let _ = reply.send(Err(shared.lost()));
                } else {
                    to_line(&request, &mut buf);
                    pending.push_back((request.id, reply));
                }
                if buf.len() < MAX_WRITE_BYTES {
                    next = rx.try_recv().ok();
                }
            }
        }
        if buf.is_empty() {
            continue;
        }
        let written = async {
            input.write_all(&buf).await?;
            input.flush().await
        }
        .await;
        if let Err(e) = written {
            shared.kill(format!("writing to the worker failed: {e}"));
        }
        if buf.capacity() > 4 * MAX_WRITE_BYTES {
            buf = Vec::with_capacity(64 * 1024);
        }
    }
    // Every handle is gone: closing stdin ends the worker cleanly.
    let _ = input.shutdown().await;
}

async fn read_loop(
    mut output: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = io::Result<bytes::Bytes>> + Send>,
    >,
    mut buf: BytesMut,
    shared: Arc<Shared>,
) {
    // How much of `buf` is known to hold no newline: a long line arriving
    // in many chunks is scanned once, not once per chunk.
    let mut scanned = 0;
    let why = loop {
        // Hand out every complete line already buffered.
        while let Some(pos) = buf[scanned..].iter().position(|b| *b == b'\n') {
            let line = buf.split_to(scanned + pos + 1);
            scanned = 0;
            if let Err(why) = deliver(&line, &shared) {
                shared.kill(why);
                return;
            }
        }
        scanned = buf.len();
        match output.next().await {
            Some(Ok(chunk)) => {
                if buf.is_empty() {
                    buf = BytesMut::from(&chunk[..]);
                } else {
                    buf.extend_from_slice(&chunk);
                }
            }
            Some(Err(e)) => break format!("reading from the worker failed: {e}"),
            None => break "the worker's output ended (container stopped or worker exited)".into(),
        }
    };
    shared.kill(why);
}

/// Parses one answer line and completes the caller waiting for it.
fn deliver(line: &[u8], shared: &Shared) -> Result<(), String> {
    let response: Response = serde_json::from_slice(line).map_err(|e| {
        format!(
            "unreadable answer ({e}): {:?}",
            String::from_utf8_lossy(&line[..line.len().min(200)])
        )
    })?;
    let (expected, reply) = shared
        .pending
        .lock()
        .unwrap()
        .pop_front()
        .ok_or_else(|| "an answer nobody asked for".to_string())?;
    if response.id != Some(expected) {
        let why = format!("answer id {:?} where {expected} was expected", response.id);
        let _ = reply.send(Err(SessionError::Protocol(why.clone())));
        return Err(why);
    }
    let _ = reply.send(Ok(response.outcome));
    Ok(())
}
