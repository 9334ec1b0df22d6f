//! The databases this gateway serves: their lifecycle (spawn, prune, delete,
//! wake) and the dispatch of operations to their sessions.
//!
//! Docker is the source of truth. The registry only caches, per database
//! seen, a pool of warm sessions and a lifecycle lock; anything it does not
//! know it asks the runtime, so a restarted gateway re-adopts every database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use dbforge_protocol::{BeginMode, Op, Outcome, Payload, Statement, Value};
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::error::ApiError;
use crate::names::DbName;
use deadpool::managed::PoolError;

use crate::pool::{LaneManager, OpenError, Pool};
use crate::runtime::{Container, DbSettings, Instance, Runtime, SessionArgs};
use crate::session::{SessionError, SessionLimits};
use crate::transactions::Transactions;

/// The smallest size quota a spawn may ask for: room for SQLite's header
/// page, the schema and a little data.
pub const MIN_MAX_DB_BYTES: u64 = 64 * 1024;
/// The largest size quota a spawn may ask for (SQLite's own limit is far
/// above; this is a sanity bound on one tenant).
pub const MAX_MAX_DB_BYTES: u64 = 1 << 40;

/// What a spawn did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spawned {
    /// A new instance was made (a new database, or a pruned one's container).
    Created,
    /// The instance existed; it was started if it was stopped.
    Existing,
}

/// A database's details for the admin API.
pub struct Details {
    /// What the runtime knows.
    pub instance: Instance,
    /// Bytes used by the database file, when its container is running.
    pub size_bytes: Option<u64>,
}

struct Db {
    /// Serializes spawn, prune, delete and waking of this database.
    lifecycle: Arc<tokio::sync::Mutex<()>>,
    /// The pool and the settings its sessions were opened with; replaced
    /// whole when the instance is pruned or deleted or its settings differ.
    pool: RwLock<(Pool, DbSettings)>,
}

impl Db {
    fn pool(&self) -> Pool {
        self.pool.read().unwrap().0.clone()
    }
}

/// See the module documentation.
pub struct Registry {
    runtime: Arc<dyn Runtime>,
    config: Arc<Config>,
    dbs: Mutex<HashMap<DbName, Arc<Db>>>,
    /// Data-plane requests in flight to workers, across all databases.
    inflight: Arc<Semaphore>,
    /// Open interactive transactions.
    transactions: Transactions,
}

impl Registry {
    /// An empty registry over `runtime`.
    pub fn new(runtime: Arc<dyn Runtime>, config: Arc<Config>) -> Registry {
        Registry {
            inflight: Arc::new(Semaphore::new(config.max_inflight)),
            transactions: Transactions::new(
                std::time::Duration::from_millis(config.tx_idle_timeout_ms),
                config.max_tx_per_db,
            ),
            runtime,
            config,
            dbs: Mutex::new(HashMap::new()),
        }
    }

    /// The runtime behind the registry.
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    fn new_pool(
        &self,
        name: &DbName,
        settings: DbSettings,
        lifecycle: &Arc<tokio::sync::Mutex<()>>,
    ) -> Pool {
        let c = &self.config;
        let args = SessionArgs {
            synchronous: settings.synchronous,
            max_bytes: settings.max_bytes,
            timeout_ms: c.statement_timeout_ms,
            max_rows: c.max_rows,
            max_answer_bytes: c.max_answer_bytes,
            max_line_bytes: c.max_line_bytes() as u64,
        };
        let limits = SessionLimits {
            answer_deadline: c.answer_deadline(),
            max_line_bytes: c.max_line_bytes(),
        };
        LaneManager::pool(
            name.clone(),
            self.runtime.clone(),
            args,
            limits,
            c.sessions_per_db as usize,
            c.inflight_per_session as usize,
            c.pool_wait(),
            lifecycle.clone(),
        )
    }

    /// The cached entry of a database, made from `instance` (whose settings
    /// must be the ones Docker holds) if missing.
    fn entry(&self, instance: &Instance) -> Arc<Db> {
        let mut dbs = self.dbs.lock().unwrap();
        dbs.entry(instance.name.clone())
            .or_insert_with(|| {
                let lifecycle = Arc::new(tokio::sync::Mutex::new(()));
                let pool = self.new_pool(&instance.name, instance.settings, &lifecycle);
                Arc::new(Db {
                    pool: RwLock::new((pool, instance.settings)),
                    lifecycle,
                })
            })
            .clone()
    }

    fn cached(&self, name: &DbName) -> Option<Arc<Db>> {
        self.dbs.lock().unwrap().get(name).cloned()
    }

    fn forget(&self, name: &DbName) {
        self.dbs.lock().unwrap().remove(name);
    }

    /// The entry of an existing database, asking the runtime if not cached.
    async fn db(&self, name: &DbName) -> Result<Arc<Db>, ApiError> {
        if let Some(db) = self.cached(name) {
            return Ok(db);
        }
        match self.runtime.find(name).await? {
            Some(instance) => Ok(self.entry(&instance)),
            None => Err(ApiError::DatabaseNotFound),
        }
    }

    /// Replaces a database's pool with a fresh one and ends the old one's
    /// sessions: their workers see EOF and exit.
    async fn reset_pool(&self, name: &DbName, db: &Db, settings: DbSettings) {
        let fresh = self.new_pool(name, settings, &db.lifecycle);
        let (old, _) = std::mem::replace(&mut *db.pool.write().unwrap(), (fresh, settings));
        close_pool(&old).await;
    }

    /// Rebuilds the cache from the runtime (at start-up). Returns how many
    /// databases were found.
    pub async fn adopt_all(&self) -> Result<usize, ApiError> {
        let all = self.runtime.list().await?;
        for instance in &all {
            self.entry(instance);
        }
        Ok(all.len())
    }

    /// Creates the database if it does not exist and makes its instance run.
    pub async fn spawn(
        &self,
        name: &DbName,
        requested: DbSettings,
    ) -> Result<(Spawned, Container), ApiError> {
        // The home first: its labels are the database's settings from then on.
        let settings = match self.runtime.find(name).await? {
            Some(instance) => instance.settings,
            None => self.runtime.create_home(name, requested).await?,
        };
        let db = self.entry(&Instance {
            name: name.clone(),
            settings,
            created: None,
            container: None,
        });
        let _lifecycle = db.lifecycle.lock().await;
        // Looked at again under the lock: a concurrent spawn may have made
        // the container meanwhile, and then this one did not.
        let Some(instance) = self.runtime.find(name).await? else {
            return Err(ApiError::DatabaseNotFound);
        };
        if db.pool.read().unwrap().1 != instance.settings {
            self.reset_pool(name, &db, instance.settings).await;
        }
        let had_container = instance.container.is_some();
        let (container, created) = self.runtime.start(name).await?;
        // Open a session now, in the background, so that the first query
        // finds it warm instead of waiting for an exec to start.
        let pool = db.pool();
        tokio::spawn(async move {
            if let Err(e) = pool.get().await {
                tracing::debug!(error = %e, "could not pre-open a session");
            }
        });
        let spawned = if created || !had_container {
            Spawned::Created
        } else {
            Spawned::Existing
        };
        Ok((spawned, container))
    }

    /// Stops and removes the database's container; its data stays.
    pub async fn prune(&self, name: &DbName) -> Result<(), ApiError> {
        let Some(instance) = self.runtime.find(name).await? else {
            return Err(ApiError::InstanceNotFound);
        };
        let db = self.entry(&instance);
        let _lifecycle = db.lifecycle.lock().await;
        self.transactions.end_all(Some(name));
        self.reset_pool(name, &db, instance.settings).await;
        if !self.runtime.remove_container(name).await? {
            return Err(ApiError::InstanceNotFound);
        }
        Ok(())
    }

    /// Removes the database: container and data.
    pub async fn destroy(&self, name: &DbName) -> Result<(), ApiError> {
        let Some(instance) = self.runtime.find(name).await? else {
            self.forget(name);
            return Err(ApiError::DatabaseNotFound);
        };
        let db = self.entry(&instance);
        let _lifecycle = db.lifecycle.lock().await;
        self.transactions.end_all(Some(name));
        close_pool(&db.pool()).await;
        // Forgotten whatever happens next: the next request asks Docker.
        self.forget(name);
        if self.runtime.destroy(name).await? {
            Ok(())
        } else {
            Err(ApiError::DatabaseNotFound)
        }
    }

    /// Every database with an instance (a pruned one has none).
    pub async fn list(&self) -> Result<Vec<Instance>, ApiError> {
        let mut all = self.runtime.list().await?;
        all.retain(|i| i.container.is_some());
        Ok(all)
    }

    /// One database's details.
    pub async fn details(&self, name: &DbName) -> Result<Details, ApiError> {
        let Some(instance) = self.runtime.find(name).await? else {
            return Err(ApiError::DatabaseNotFound);
        };
        let running = instance.container.as_ref().is_some_and(|c| c.is_running());
        let size_bytes = if running {
            let op = Op::Execute(Statement::new(
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
            ));
            match self.execute(name, op).await {
                Ok(Payload::Query(q)) => match q.rows.first().and_then(|r| r.first()) {
                    Some(Value::Integer(n)) => u64::try_from(*n).ok(),
                    _ => None,
                },
                _ => None,
            }
        } else {
            None
        };
        Ok(Details {
            instance,
            size_bytes,
        })
    }

    /// Runs one operation on a session of the database.
    ///
    /// A request that was never sent
    /// (its session ended first, or the pool was replaced by a prune) is
    /// retried once.
    pub async fn execute(&self, name: &DbName, op: Op) -> Result<Payload, ApiError> {
        let db = self.db(name).await?;
        let op = Arc::new(op);
        let mut retried = false;
        loop {
            let pool = db.pool();
            let lane = match pool.get().await {
                Ok(lane) => lane,
                Err(PoolError::Closed) if !retried => {
                    retried = true;
                    continue;
                }
                Err(e) => return Err(self.pool_error(name, e)),
            };
            // The global bound counts work handed to workers, not requests
            // queued for one database's slots, so a flood on one database
            // cannot starve the others.
            let permit = self
                .inflight
                .clone()
                .try_acquire_owned()
                .map_err(|_| ApiError::Overloaded)?;
            // The lane and the permit are held by the request itself until
            // the worker answers, so a client that disconnects does not free
            // a slot whose request is still queued in the worker.
            let session = lane.session.clone();
            let result = session
                .call_holding(op.clone(), Some(Box::new((lane, permit))))
                .await;
            return match result {
                Ok(Outcome::Ok(payload)) => Ok(payload),
                Ok(Outcome::Error(e)) => Err(ApiError::Sql(e)),
                Err(SessionError::NotSent) if !retried => {
                    retried = true;
                    pool.retain(|lane, _| lane.session.is_alive());
                    continue;
                }
                Err(e) => {
                    // Drop this session's other idle lanes now rather than
                    // one failed recycle at a time.
                    pool.retain(|lane, _| lane.session.is_alive());
                    Err(e.into())
                }
            };
        }
    }

    fn pool_error(&self, name: &DbName, e: PoolError<OpenError>) -> ApiError {
        match e {
            PoolError::Timeout(_) => ApiError::PoolTimeout,
            PoolError::Backend(e) => {
                let e = ApiError::from(e);
                if matches!(e, ApiError::DatabaseNotFound) {
                    // Deleted behind our back: forget it.
                    self.forget(name);
                }
                e
            }
            PoolError::Closed => {
                ApiError::SessionLost("the database was pruned or deleted meanwhile".into())
            }
            PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
                ApiError::SessionLost("session pool misconfigured".into())
            }
        }
    }

    /// Begins an interactive transaction on a session of its own; returns
    /// its id.
    pub async fn begin(&self, name: &DbName, mode: BeginMode) -> Result<String, ApiError> {
        let db = self.db(name).await?;
        self.transactions.check_room(name)?;
        let opener = db.pool().manager().opener().clone();
        let session = tokio::time::timeout(self.config.pool_wait(), opener.open())
            .await
            .map_err(|_| ApiError::PoolTimeout)??;
        match session.call(Op::Begin { mode }).await? {
            Outcome::Ok(_) => Ok(self.transactions.insert(name.clone(), session)),
            Outcome::Error(e) => Err(ApiError::Sql(e)),
        }
    }

    /// Runs a statement or a batch inside a transaction.
    pub async fn execute_in(&self, name: &DbName, tx: &str, op: Op) -> Result<Payload, ApiError> {
        self.transactions.execute(name, tx, op).await
    }

    /// Commits or rolls back a transaction.
    pub async fn finish(&self, name: &DbName, tx: &str, commit: bool) -> Result<(), ApiError> {
        self.transactions.finish(name, tx, commit).await
    }

    /// Rolls back transactions idle past their timeout (called periodically).
    pub fn reap_transactions(&self) -> usize {
        self.transactions.reap()
    }

    /// Closes every pool (at shutdown): workers see EOF and exit.
    pub async fn close_all(&self) {
        self.transactions.end_all(None);
        let all: Vec<Arc<Db>> = self.dbs.lock().unwrap().values().cloned().collect();
        for db in all {
            close_pool(&db.pool()).await;
        }
    }
}

/// Refuses new requests on a pool and ends its sessions.
async fn close_pool(pool: &Pool) {
    pool.close();
    pool.manager().close_sessions().await;
}
