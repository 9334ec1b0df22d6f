//! The per-database pool of warm sessions, managed by deadpool.
//!
//! deadpool hands out objects exclusively, while a session serves many
//! requests at once (pipelining). So the pooled object is a [`Lane`]: one
//! request slot on a shared session. The pool's size is
//! `sessions_per_db * inflight_per_session`; its wait timeout bounds how long
//! a request queues for a slot; its recycle step drops the lanes of a dead
//! session, and creating a lane joins the least loaded session, or opens a
//! new one when that one is full and fewer than `sessions_per_db` are alive,
//! waking the database's container if it is not running. Sessions are thus created lazily, bounded, health-checked and
//! replaced when they die.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};

use crate::names::DbName;
use crate::runtime::{Runtime, RuntimeError, SessionArgs};
use crate::session::{Session, SessionError, SessionLimits};

/// How many times opening a session wakes the container before giving up.
const WAKE_ATTEMPTS: u32 = 3;
/// Pause between wake attempts, times the attempt number.
const WAKE_BACKOFF: Duration = Duration::from_millis(100);

/// One request slot on a session.
pub struct Lane {
    /// The session this slot belongs to.
    pub session: Arc<Session>,
}

impl Lane {
    fn new(session: Arc<Session>) -> Lane {
        session.lanes.fetch_add(1, Ordering::Relaxed);
        Lane { session }
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        self.session.lanes.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a lane could not be made.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The runtime failed (or the database has no home any more).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The session did not come up.
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// Opens sessions into one database, waking its container when needed.
/// Shared by the lane pool and by transactions (which pin a session of
/// their own).
#[derive(Clone)]
pub struct SessionOpener {
    name: DbName,
    runtime: Arc<dyn Runtime>,
    args: SessionArgs,
    limits: SessionLimits,
    /// Held while the container is being woken; shared with the database's
    /// lifecycle operations (spawn, prune, delete).
    lifecycle: Arc<tokio::sync::Mutex<()>>,
}

impl SessionOpener {
    /// Opens a session, waking the container if it is not running. A
    /// container that stops again while being woken (killed once more, or
    /// pruned meanwhile) is retried a few times, then reported.
    pub async fn open(&self) -> Result<Session, OpenError> {
        let mut attempt = 0;
        loop {
            let retryable = match self.runtime.open_session(&self.name, &self.args).await {
                Ok(io) => match Session::start(io, self.limits).await {
                    Ok(session) => return Ok(session),
                    // The container stopped before the worker said hello.
                    Err(SessionError::Lost(why)) => OpenError::Session(SessionError::Lost(why)),
                    Err(e) => return Err(e.into()),
                },
                Err(RuntimeError::NotRunning) => OpenError::Runtime(RuntimeError::NotRunning),
                Err(e) => return Err(e.into()),
            };
            if attempt >= WAKE_ATTEMPTS {
                return Err(retryable);
            }
            attempt += 1;
            if attempt > 1 {
                tokio::time::sleep(WAKE_BACKOFF * attempt).await;
            }
            let _lifecycle = self.lifecycle.lock().await;
            let (container, created) = self.runtime.start(&self.name).await?;
            tracing::info!(db = %self.name, container = %container.id, created, attempt, "woke database on demand");
        }
    }
}

/// Creates lanes for one database: see the module's documentation.
pub struct LaneManager {
    opener: SessionOpener,
    max_sessions: usize,
    /// Requests in flight on one session at most.
    lanes_per_session: usize,
    /// Live sessions. The async lock also serializes opening sessions, so
    /// concurrent lane creations never open more than `max_sessions`.
    sessions: tokio::sync::Mutex<Vec<Arc<Session>>>,
}

/// The pool type.
pub type Pool = managed::Pool<LaneManager>;

impl LaneManager {
    /// A pool for one database. Waiting for a slot and creating one (which
    /// may wake the container and open a session) are each bounded by
    /// `wait`, so a request never hangs: it gets a slot or a 503.
    #[allow(clippy::too_many_arguments)]
    pub fn pool(
        name: DbName,
        runtime: Arc<dyn Runtime>,
        args: SessionArgs,
        limits: SessionLimits,
        max_sessions: usize,
        inflight_per_session: usize,
        wait: Duration,
        lifecycle: Arc<tokio::sync::Mutex<()>>,
    ) -> Pool {
        let manager = LaneManager {
            opener: SessionOpener {
                name,
                runtime,
                args,
                limits,
                lifecycle,
            },
            max_sessions,
            lanes_per_session: inflight_per_session,
            sessions: tokio::sync::Mutex::new(Vec::new()),
        };
        managed::Pool::builder(manager)
            .max_size(max_sessions * inflight_per_session)
            .wait_timeout(Some(wait))
            .create_timeout(Some(wait))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("a runtime is set, so the pool builds")
    }

    /// How this pool opens sessions.
    pub fn opener(&self) -> &SessionOpener {
        &self.opener
    }
}

impl LaneManager {
    /// Ends every session of this pool (prune, delete, shutdown): requests
    /// in flight fail, workers see EOF and exit.
    pub async fn close_sessions(&self) {
        for session in self.sessions.lock().await.drain(..) {
            session.close();
        }
    }
}

impl managed::Manager for LaneManager {
    type Type = Lane;
    type Error = OpenError;

    async fn create(&self) -> Result<Lane, OpenError> {
        let mut sessions = self.sessions.lock().await;
        sessions.retain(|s| s.is_alive());
        let least = sessions
            .iter()
            .min_by_key(|s| s.lanes.load(Ordering::Relaxed))
            .cloned();
        // Fill a session before opening the next: one busy pipe carries many
        // requests per write, which is what the exec relay is cheap at
        // (BENCHMARKS.md); a further session serves what one cannot hold.
        let full = least
            .as_ref()
            .is_none_or(|s| s.lanes.load(Ordering::Relaxed) >= self.lanes_per_session);
        if sessions.len() < self.max_sessions && full {
            match self.opener.open().await {
                Ok(session) => {
                    let session = Arc::new(session);
                    tracing::debug!(db = %self.opener.name, sessions = sessions.len() + 1, "opened session");
                    sessions.push(session.clone());
                    return Ok(Lane::new(session));
                }
                Err(e) if least.is_none() => return Err(e),
                Err(e) => {
                    tracing::warn!(db = %self.opener.name, error = %e, "could not open another session")
                }
            }
        }
        let session = least.expect("a session exists when none was opened");
        Ok(Lane::new(session))
    }

    async fn recycle(&self, lane: &mut Lane, _: &Metrics) -> RecycleResult<OpenError> {
        if lane.session.is_alive() {
            Ok(())
        } else {
            Err(RecycleError::message("session ended"))
        }
    }
}
