//! Interactive transactions: a `begin` pins a session of its own (a worker
//! process in the database's container) until `commit`, `rollback`, an error,
//! or the idle timeout.
//!
//! A pipelined session cannot carry a transaction: the other requests queued
//! on it would run inside it. So each transaction opens its own session,
//! outside the lane pool, and its requests run one at a time, in order.
//! As in PostgreSQL, an error inside a transaction ends it: it is rolled
//! back, and the answer says so.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dbforge_protocol::{Op, Outcome, Payload, WireError};

use crate::error::ApiError;
use crate::names::DbName;
use crate::session::Session;

/// One open transaction.
struct Tx {
    /// The database it belongs to.
    db: DbName,
    /// Its own session, in a `begin` state.
    session: Session,
    /// Serializes its requests, and tells the reaper it is in use.
    gate: tokio::sync::Mutex<()>,
    /// When a request last finished.
    last_used: Mutex<Instant>,
}

/// The open transactions of a gateway.
pub struct Transactions {
    open: Mutex<HashMap<String, std::sync::Arc<Tx>>>,
    idle_timeout: Duration,
    max_per_db: usize,
}

impl Transactions {
    /// No transaction open yet.
    pub fn new(idle_timeout: Duration, max_per_db: usize) -> Transactions {
        Transactions {
            open: Mutex::new(HashMap::new()),
            idle_timeout,
            max_per_db,
        }
    }

    /// Refuses a new transaction on `db` when it has its maximum open.
    pub fn check_room(&self, db: &DbName) -> Result<(), ApiError> {
        let open = self.open.lock().unwrap();
        if open.values().filter(|tx| &tx.db == db).count() >= self.max_per_db {
            Err(ApiError::TooManyTransactions(self.max_per_db))
        } else {
            Ok(())
        }
    }

    /// Registers a session whose `begin` succeeded; returns the id.
    pub fn insert(&self, db: DbName, session: Session) -> String {
        let id = new_id();
        let tx = Tx {
            db,
            session,
            gate: tokio::sync::Mutex::new(()),
            last_used: Mutex::new(Instant::now()),
        };
        self.open
            .lock()
            .unwrap()
            .insert(id.clone(), std::sync::Arc::new(tx));
        id
    }

    fn get(&self, db: &DbName, id: &str) -> Result<std::sync::Arc<Tx>, ApiError> {
        match self.open.lock().unwrap().get(id) {
            Some(tx) if &tx.db == db => Ok(tx.clone()),
            _ => Err(ApiError::TransactionNotFound),
        }
    }

    fn remove(&self, id: &str) -> Option<std::sync::Arc<Tx>> {
        self.open.lock().unwrap().remove(id)
    }

    /// Runs a statement or batch inside the transaction. Any error ends it.
    pub async fn execute(&self, db: &DbName, id: &str, op: Op) -> Result<Payload, ApiError> {
        let tx = self.get(db, id)?;
        let _turn = tx.gate.lock().await;
        if !self.open.lock().unwrap().contains_key(id) {
            // Ended (expired, committed) while this request waited its turn.
            return Err(ApiError::TransactionNotFound);
        }
        let result = tx.session.call(op).await;
        *tx.last_used.lock().unwrap() = Instant::now();
        match result {
            Ok(Outcome::Ok(payload)) => Ok(payload),
            Ok(Outcome::Error(e)) => {
                self.end(id, &tx).await;
                Err(ApiError::Sql(WireError::new(
                    e.code,
                    format!(
                        "{} (the transaction was rolled back and has ended)",
                        e.message
                    ),
                )))
            }
            Err(e) => {
                self.remove(id);
                tx.session.close();
                Err(e.into())
            }
        }
    }

    /// Commits (`commit`) or rolls back the transaction; it ends either way.
    pub async fn finish(&self, db: &DbName, id: &str, commit: bool) -> Result<(), ApiError> {
        let tx = self.get(db, id)?;
        let _turn = tx.gate.lock().await;
        if self.remove(id).is_none() {
            return Err(ApiError::TransactionNotFound);
        }
        let op = if commit { Op::Commit } else { Op::Rollback };
        let result = tx.session.call(op).await;
        // Closing the session ends the worker, which rolls back whatever
        // is still open.
        tx.session.close();
        match result? {
            Outcome::Ok(_) => Ok(()),
            Outcome::Error(e) => Err(ApiError::Sql(e)),
        }
    }

    /// Rolls back and forgets a transaction after an error.
    async fn end(&self, id: &str, tx: &Tx) {
        self.remove(id);
        let _ = tx.session.call(Op::Rollback).await;
        tx.session.close();
    }

    /// Ends every transaction idle past the timeout. Returns how many.
    pub fn reap(&self) -> usize {
        let mut open = self.open.lock().unwrap();
        let before = open.len();
        open.retain(|_, tx| {
            let busy = tx.gate.try_lock().is_err();
            let fresh = tx.last_used.lock().unwrap().elapsed() < self.idle_timeout;
            if !busy && !fresh {
                tx.session.close();
            }
            busy || fresh
        });
        before - open.len()
    }

    /// Ends every transaction of `db` (prune, delete), or all of them.
    pub fn end_all(&self, db: Option<&DbName>) {
        self.open.lock().unwrap().retain(|_, tx| {
            let ends = db.is_none_or(|db| &tx.db == db);
            if ends {
                tx.session.close();
            }
            !ends
        });
    }
}

/// An unguessable id: 128 bits from the process's randomly keyed hasher.
fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let a = RandomState::new().hash_one(n);
    let b = RandomState::new().hash_one((n, Instant::now()));
    format!("{a:016x}{b:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_long() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.len() == 32));
    }
}
