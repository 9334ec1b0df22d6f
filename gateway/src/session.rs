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
//! marks itself dead, fails every request in flight with
//! [`SessionError::Lost`] and closes the exec; the pool then replaces it. A
//! watchdog does the same, with [`SessionError::Timeout`], when the worker
//! stops answering for the answer deadline while requests wait.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use dbforge_protocol::{
    to_line, ErrorCode, Hello, Op, Outcome, Response, WireError, PROTOCOL_VERSION,
};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::AbortHandle;

use crate::runtime::SessionIo;

/// How long a new session may take to say hello. runc needs ~45 ms to start
/// the process on an idle host; a loaded host with hundreds of containers
/// can take seconds.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(15);

/// Writes to a worker whose answers are not all in yet, at most; further
/// requests queue in the gateway and leave together in the next write.
/// Two keeps the worker busy (one batch runs while the next is in its pipe)
/// while every other request rides in a shared write.
const MAX_BATCHES_IN_FLIGHT: usize = 2;

/// Most bytes coalesced into one write to the worker's stdin; bounds the
/// latency one large batch of requests adds to the next.
const MAX_WRITE_BYTES: usize = 1024 * 1024;

/// First sizes of a session's read and write buffers. Small, because an
/// idle gateway holds one pair per session and hundreds of sessions; they
/// grow with the traffic.
const READ_BUFFER: usize = 8 * 1024;
const WRITE_BUFFER: usize = 8 * 1024;

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
    /// The session had ended before the request was written: it did not
    /// run, and can be retried on another session as it is.
    #[error("the session had ended before the request was sent")]
    NotSent,
}

/// An entry of the pending queue: the id expected, the caller, and whether
/// it is the last request of its write.
type Pending = (u64, Reply, bool);

/// A caller waiting for its answer, and what it holds until then.
struct Reply {
    tx: oneshot::Sender<Result<Outcome, SessionError>>,
    /// Released only once the answer is in (or the session is dead), even if
    /// the caller gave up waiting: a request slot stays taken while its
    /// request is still queued in the worker.
    _hold: Option<Box<dyn Send>>,
}

impl Reply {
    fn send(self, result: Result<Outcome, SessionError>) {
        let _ = self.tx.send(result);
    }
}

/// How often the watchdog looks at the oldest request in flight, at most.
const WATCHDOG_TICK: Duration = Duration::from_millis(500);

/// Limits a session enforces on its own side.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// How long the worker may go without answering while requests are in
    /// flight before the session is declared stuck and ended.
    pub answer_deadline: Duration,
    /// The worker's longest request line; a longer request is refused here
    /// rather than sent (the worker would refuse it without reading it).
    pub max_line_bytes: usize,
}

struct Shared {
    /// Callers waiting for answers, oldest first, with the id each expects.
    pending: Mutex<VecDeque<Pending>>,
    /// Writes whose last request has not been answered yet.
    batches_in_flight: AtomicUsize,
    /// Signalled when a batch is fully answered (or the session dies).
    batch_done: Notify,
    /// When the worker last made progress: its last answer, or the moment
    /// requests were queued to an idle session. The watchdog measures the
    /// oldest request's wait from here, so requests queued behind a slow one
    /// are not blamed for its time.
    last_progress: Mutex<Instant>,
    /// False once the session has ended; never true again.
    alive: AtomicBool,
    /// Why it ended, for the callers that come after.
    death: Mutex<Option<SessionError>>,
    /// The reader, writer and watchdog tasks, ended when the session dies so
    /// that the exec connection closes and the worker sees EOF.
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Shared {
    /// Marks the session dead, fails every caller still waiting with `why`,
    /// and ends the session's tasks.
    fn kill(&self, why: SessionError) {
        self.alive.store(false, Ordering::SeqCst);
        {
            let mut death = self.death.lock().unwrap();
            if death.is_none() {
                *death = Some(why.clone());
            }
        }
        let waiting: Vec<_> = self.pending.lock().unwrap().drain(..).collect();
        self.batch_done.notify_one();
        for (_, reply, _) in waiting {
            reply.send(Err(why.clone()));
        }
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn death(&self) -> SessionError {
        self.death
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| SessionError::Lost("session closed".into()))
    }
}

/// A handle to one worker session; dropping the last handle closes the
/// worker's stdin, which ends the worker.
pub struct Session {
    /// Request slots (pool lanes) on this session; kept by the pool.
    pub lanes: AtomicUsize,
    queue: mpsc::Sender<(u64, Arc<Op>, Reply)>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    hello: Hello,
    limits: SessionLimits,
}

impl Session {
    /// Waits for the worker's hello on `io`, checks its protocol version,
    /// and starts the session's reader, writer and watchdog tasks.
    pub async fn start(io: SessionIo, limits: SessionLimits) -> Result<Session, SessionError> {
        let SessionIo { mut output, input } = io;
        let mut buf = BytesMut::with_capacity(READ_BUFFER);
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
            batches_in_flight: AtomicUsize::new(0),
            batch_done: Notify::new(),
            last_progress: Mutex::new(Instant::now()),
            alive: AtomicBool::new(true),
            death: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
        });
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        let tasks = [
            tokio::spawn(write_loop(rx, input, shared.clone(), limits)).abort_handle(),
            tokio::spawn(read_loop(output, buf, shared.clone())).abort_handle(),
            tokio::spawn(watchdog(shared.clone(), limits.answer_deadline)).abort_handle(),
        ];
        shared.tasks.lock().unwrap().extend(tasks);
        Ok(Session {
            lanes: AtomicUsize::new(0),
            queue,
            shared,
            next_id: AtomicU64::new(1),
            hello,
            limits,
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

    /// Ends the session now: callers in flight fail, the worker sees EOF.
    pub fn close(&self) {
        self.shared
            .kill(SessionError::Lost("the session was closed".into()));
    }

    /// Sends one request and waits for its answer. The wait is bounded by
    /// the watchdog: a worker that stops answering for the answer deadline
    /// is ended, and every caller waiting on it fails.
    pub async fn call(&self, op: Op) -> Result<Outcome, SessionError> {
        self.call_holding(Arc::new(op), None).await
    }

    /// Like [`Session::call`], keeping `hold` alive until the answer is in,
    /// whether or not the caller still waits for it.
    pub async fn call_holding(
        &self,
        op: Arc<Op>,
        hold: Option<Box<dyn Send>>,
    ) -> Result<Outcome, SessionError> {
        if !self.is_alive() {
            return Err(SessionError::NotSent);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let reply = Reply { tx, _hold: hold };
        self.queue
            .send((id, op, reply))
            .await
            .map_err(|_| SessionError::NotSent)?;
        match rx.await {
            Ok(result) => result,
            Err(_) => Err(self.shared.death()),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The writer sees its queue close and shuts the worker's stdin; the
        // worker finishes what it has and exits. Should it not (it stopped
        // reading its input), end the tasks once the deadline has passed.
        self.shared.alive.store(false, Ordering::SeqCst);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            let deadline = self.limits.answer_deadline;
            runtime.spawn(async move {
                tokio::time::sleep(deadline).await;
                shared.kill(SessionError::Lost("the session was closed".into()));
            });
        }
    }
}

async fn write_loop(
    mut rx: mpsc::Receiver<(u64, Arc<Op>, Reply)>,
    mut input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    shared: Arc<Shared>,
    limits: SessionLimits,
) {
    let mut buf = Vec::with_capacity(WRITE_BUFFER);
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        // Batching: while MAX_BATCHES_IN_FLIGHT writes are unanswered, new
        // requests wait here and go out together in the next write. An idle
        // session writes a request at once; a busy one sends few large
        // writes, which is what the exec relay (dockerd, the shim) is
        // cheap at.
        while shared.batches_in_flight.load(Ordering::SeqCst) >= MAX_BATCHES_IN_FLIGHT
            && shared.alive.load(Ordering::SeqCst)
        {
            shared.batch_done.notified().await;
        }
        buf.clear();
        let mut next = Some(first);
        // Encode every request queued right now (outside any lock).
        while let Some((id, op, reply)) = next.take() {
            let start = buf.len();
            encode_request(id, &op, &mut buf);
            let len = buf.len() - start;
            if len > limits.max_line_bytes {
                buf.truncate(start);
                reply.send(Ok(Outcome::Error(WireError::new(
                    ErrorCode::TooLarge,
                    format!(
                        "the request encodes to {len} bytes, more than the worker accepts ({}); split it",
                        limits.max_line_bytes
                    ),
                ))));
            } else {
                batch.push((id, reply, false));
            }
            if buf.len() < MAX_WRITE_BYTES {
                next = rx.try_recv().ok();
            }
        }
        let Some(last) = batch.last_mut() else {
            continue;
        };
        last.2 = true;
        {
            // Register every caller before its bytes are written, in write
            // order, so the reader always finds the caller of an answer.
            let mut pending = shared.pending.lock().unwrap();
            if !shared.alive.load(Ordering::SeqCst) {
                drop(pending);
                for (_, reply, _) in batch.drain(..) {
                    reply.send(Err(SessionError::NotSent));
                }
                continue;
            }
            if pending.is_empty() {
                *shared.last_progress.lock().unwrap() = Instant::now();
            }
            pending.extend(batch.drain(..));
            shared.batches_in_flight.fetch_add(1, Ordering::SeqCst);
        }
        let written = async {
            input.write_all(&buf).await?;
            input.flush().await
        }
        .await;
        if let Err(e) = written {
            shared.kill(SessionError::Lost(format!(
                "writing to the worker failed: {e}"
            )));
            return;
        }
        if buf.capacity() > 4 * MAX_WRITE_BYTES {
            buf = Vec::with_capacity(WRITE_BUFFER);
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
                shared.kill(SessionError::Protocol(why));
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
    shared.kill(SessionError::Lost(why));
}

/// Writes one request line, as [`dbforge_protocol::Request`] would serialize, without owning
/// the operation (callers keep it to retry a request that was never sent).
fn encode_request(id: u64, op: &Op, buf: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(buf, "{{\"id\":{id},\"op\":");
    to_line(op, buf);
    buf.pop();
    buf.extend_from_slice(b"}\n");
}

/// Parses one answer line and completes the caller waiting for it.
fn deliver(line: &[u8], shared: &Shared) -> Result<(), String> {
    let response: Response = serde_json::from_slice(line).map_err(|e| {
        format!(
            "unreadable answer ({e}): {:?}",
            String::from_utf8_lossy(&line[..line.len().min(200)])
        )
    })?;
    let (expected, reply, ends_batch) = shared
        .pending
        .lock()
        .unwrap()
        .pop_front()
        .ok_or_else(|| "an answer nobody asked for".to_string())?;
    if ends_batch {
        shared.batches_in_flight.fetch_sub(1, Ordering::SeqCst);
        shared.batch_done.notify_one();
    }
    *shared.last_progress.lock().unwrap() = Instant::now();
    // Answers come in request order; `id: null` is the worker's answer to a
    // line it could not read at all, still in its place.
    if let Some(id) = response.id.filter(|id| *id != expected) {
        let why = format!("answer id {id} where {expected} was expected");
        reply.send(Err(SessionError::Protocol(why.clone())));
        return Err(why);
    }
    reply.send(Ok(response.outcome));
    Ok(())
}

/// Ends the session when its oldest request has waited past `deadline`
/// since the worker last made progress.
async fn watchdog(shared: Arc<Shared>, deadline: Duration) {
    let tick = WATCHDOG_TICK.min(deadline / 4);
    loop {
        tokio::time::sleep(tick).await;
        if !shared.alive.load(Ordering::SeqCst) {
            return;
        }
        let stuck = !shared.pending.lock().unwrap().is_empty()
            && shared.last_progress.lock().unwrap().elapsed() > deadline;
        if stuck {
            shared.kill(SessionError::Timeout(deadline));
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    //! The session against an in-memory fake worker: what it does with
    //! pipelined answers, broken answers, silence and oversized requests.

    use std::time::Duration;

    use dbforge_protocol::{Payload, Request, Statement};
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::sync::mpsc;

    use super::*;

    /// What the fake worker does with each request line it reads.
    type Script = Box<dyn FnMut(Request) -> Option<String> + Send>;

    /// A session whose worker is `script`: it answers a request with the
    /// line the script returns (None: stay silent).
    async fn session_with(script: Script, limits: SessionLimits) -> Session {
        slow_session_with(script, limits, Duration::ZERO).await
    }

    /// The same, with a worker that spends `work` on each request.
    async fn slow_session_with(
        mut script: Script,
        limits: SessionLimits,
        work: Duration,
    ) -> Session {
        let (client_in, worker_in) = tokio::io::duplex(1 << 20);
        let (out_tx, out_rx) = mpsc::unbounded_channel::<io::Result<bytes::Bytes>>();
        let hello = r#"{"protocol":1,"sqlite_version":"3","worker_version":"0"}"#;
        out_tx.send(Ok(format!("{hello}\n").into())).unwrap();
        tokio::spawn(async move {
            let mut lines = BufReader::new(worker_in).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let request: Request = serde_json::from_str(&line).unwrap();
                tokio::time::sleep(work).await;
                if let Some(answer) = script(request) {
                    // Split every answer in two frames: frames are not lines.
                    let (a, b) = answer.split_at(answer.len() / 2);
                    let _ = out_tx.send(Ok(a.to_owned().into()));
                    let _ = out_tx.send(Ok(format!("{b}\n").into()));
                }
            }
        });
        let output = futures_util::stream::unfold(out_rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let io = SessionIo {
            output: Box::pin(output),
            input: Box::pin(client_in),
        };
        Session::start(io, limits).await.unwrap()
    }

    fn limits() -> SessionLimits {
        SessionLimits {
            answer_deadline: Duration::from_secs(5),
            max_line_bytes: 1 << 20,
        }
    }

    fn pong(id: Option<u64>) -> String {
        serde_json::to_string(&Response {
            id,
            outcome: Outcome::Ok(Payload::Pong),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn pipelined_answers_reach_their_callers() {
        let echo: Script = Box::new(|r: Request| {
            let Op::Execute(s) = r.op else { return None };
            Some(
                serde_json::to_string(&Response {
                    id: Some(r.id),
                    outcome: Outcome::Error(WireError::new(ErrorCode::SqlError, s.sql)),
                })
                .unwrap(),
            )
        });
        let session = Arc::new(session_with(echo, limits()).await);
        let calls = (0..200).map(|i| {
            let session = session.clone();
            tokio::spawn(async move {
                let out = session
                    .call(Op::Execute(Statement::new(i.to_string())))
                    .await;
                (i, out)
            })
        });
        for call in calls.collect::<Vec<_>>() {
            let (i, out) = call.await.unwrap();
            match out.unwrap() {
                Outcome::Error(e) => assert_eq!(e.message, i.to_string()),
                other => panic!("{other:?}"),
            }
        }
        assert!(session.is_alive());
    }

    #[test]
    fn requests_encode_as_the_protocol_says() {
        let op = Op::Execute(Statement::new("select 1"));
        let mut line = Vec::new();
        encode_request(42, &op, &mut line);
        let mut want = Vec::new();
        to_line(&Request { id: 42, op }, &mut want);
        assert_eq!(line, want);
    }

    #[tokio::test]
    async fn an_answer_without_id_goes_to_the_oldest_caller() {
        let session = session_with(Box::new(|_| Some(pong(None))), limits()).await;
        assert_eq!(
            session.call(Op::Ping).await.unwrap(),
            Outcome::Ok(Payload::Pong)
        );
        assert!(session.is_alive());
    }

    #[tokio::test]
    async fn a_wrong_id_ends_the_session() {
        let session = session_with(Box::new(|r| Some(pong(Some(r.id + 7)))), limits()).await;
        assert!(matches!(
            session.call(Op::Ping).await,
            Err(SessionError::Protocol(_))
        ));
        assert!(!session.is_alive());
        assert!(matches!(
            session.call(Op::Ping).await,
            Err(SessionError::NotSent)
        ));
    }

    #[tokio::test]
    async fn garbage_output_ends_the_session() {
        let session = session_with(Box::new(|_| Some("not json".into())), limits()).await;
        assert!(matches!(
            session.call(Op::Ping).await,
            Err(SessionError::Protocol(_))
        ));
        assert!(!session.is_alive());
    }

    #[tokio::test]
    async fn a_silent_worker_is_declared_stuck() {
        let limits = SessionLimits {
            answer_deadline: Duration::from_millis(200),
            max_line_bytes: 1 << 20,
        };
        let session = session_with(Box::new(|_| None), limits).await;
        let started = Instant::now();
        assert!(matches!(
            session.call(Op::Ping).await,
            Err(SessionError::Timeout(_))
        ));
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(!session.is_alive());
    }

    #[tokio::test]
    async fn requests_queued_behind_a_slow_one_are_not_blamed_for_it() {
        // Each answer takes 150 ms; the deadline is 400 ms; ten requests in
        // flight wait 1.5 s in all, yet none is declared stuck.
        let limits = SessionLimits {
            answer_deadline: Duration::from_millis(400),
            max_line_bytes: 1 << 20,
        };
        let answer: Script = Box::new(|r| Some(pong(Some(r.id))));
        let session = Arc::new(slow_session_with(answer, limits, Duration::from_millis(150)).await);
        let calls: Vec<_> = (0..10)
            .map(|_| {
                let session = session.clone();
                tokio::spawn(async move { session.call(Op::Ping).await })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap(), Outcome::Ok(Payload::Pong));
        }
    }

    #[tokio::test]
    async fn an_oversized_request_is_refused_without_sending_it() {
        let limits = SessionLimits {
            answer_deadline: Duration::from_secs(5),
            max_line_bytes: 100,
        };
        let sent = Arc::new(Mutex::new(0));
        let counter = sent.clone();
        let session = session_with(
            Box::new(move |r| {
                *counter.lock().unwrap() += 1;
                Some(pong(Some(r.id)))
            }),
            limits,
        )
        .await;
        let big = Op::Execute(Statement::new("x".repeat(200)));
        match session.call(big).await.unwrap() {
            Outcome::Error(e) => assert_eq!(e.code, ErrorCode::TooLarge),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            session.call(Op::Ping).await.unwrap(),
            Outcome::Ok(Payload::Pong)
        );
        assert_eq!(*sent.lock().unwrap(), 1, "only the ping reached the worker");
    }

    #[tokio::test]
    async fn a_worker_that_exits_fails_callers_as_lost() {
        let session = session_with(Box::new(|_| None), limits()).await;
        session.close();
        assert!(!session.is_alive());
        assert!(matches!(
            session.call(Op::Ping).await,
            Err(SessionError::NotSent)
        ));
    }
}
