//! The authorizer: DB-Forge's safety rules, enforced inside SQLite.
//!
//! SQLite calls the authorizer for every action while it compiles a statement
//! (and for the statements SQLite compiles itself while running one, such as
//! VACUUM's). It lets us refuse whatever the SQL text looks like, and also
//! tells us what a statement does (writes rows, changes the schema, controls
//! transactions) without parsing SQL ourselves.
//!
//! How VACUUM is seen (found by experiment with SQLite 3.54): compiling
//! `VACUUM` or `VACUUM INTO 'f'` makes no callback at all; running it makes an
//! `Attach` callback for the file VACUUM writes, with an empty file name for
//! plain VACUUM (a temporary database) and the target for `VACUUM INTO`. So
//! while a statement runs, an ATTACH of "" is allowed (plain VACUUM, which
//! only rewrites the database in place) and any other ATTACH is refused:
//! VACUUM INTO then fails before it opens, let alone creates, its file.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

/// Pragmas that may be read: with no value, or with an argument where the
/// pragma is table-valued (`table_info(t)`). Reading any of them changes
/// nothing.
const READABLE_PRAGMAS: &[&str] = &[
    "application_id",
    "auto_vacuum",
    "busy_timeout",
    "cache_size",
    "collation_list",
    "compile_options",
    "data_version",
    "database_list",
    "defer_foreign_keys",
    "encoding",
    "foreign_key_check",
    "foreign_key_list",
    "foreign_keys",
    "freelist_count",
    "function_list",
    "index_info",
    "index_list",
    "index_xinfo",
    "integrity_check",
    "journal_mode",
    "max_page_count",
    "module_list",
    "optimize",
    "page_count",
    "page_size",
    "pragma_list",
    "quick_check",
    "recursive_triggers",
    "schema_version",
    "synchronous",
    "table_info",
    "table_list",
    "table_xinfo",
    "temp_store",
    "user_version",
    "wal_checkpoint",
];

/// Pragmas whose value is an argument (which table, how many errors), not a
/// new setting: `PRAGMA table_info = t` and `PRAGMA table_info(t)` are the same
/// statement to SQLite.
const ARGUMENT_PRAGMAS: &[&str] = &[
    "foreign_key_check",
    "foreign_key_list",
    "index_info",
    "index_list",
    "index_xinfo",
    "integrity_check",
    "optimize",
    "quick_check",
    "table_info",
    "table_list",
    "table_xinfo",
];

/// Pragmas that may be set: they change only what the database's owner is
/// entitled to change (two header fields, foreign key and trigger behaviour of
/// this connection). `wal_checkpoint` is handled apart (PASSIVE only).
const SETTABLE_PRAGMAS: &[&str] = &[
    "application_id",
    "defer_foreign_keys",
    "foreign_keys",
    "recursive_triggers",
    "user_version",
];

fn listed(list: &[&str], name: &str) -> bool {
    list.iter().any(|p| p.eq_ignore_ascii_case(name))
}

/// The verdict on `PRAGMA name [= value]`: `Err` holds why it is refused.
pub fn pragma_verdict(name: &str, value: Option<&str>) -> Result<(), String> {
    let lower = name.to_ascii_lowercase();
    match value {
        None if listed(READABLE_PRAGMAS, &lower) => Ok(()),
        Some(_) if listed(ARGUMENT_PRAGMAS, &lower) => Ok(()),
        Some(_) if listed(SETTABLE_PRAGMAS, &lower) => Ok(()),
        Some(v) if lower == "wal_checkpoint" && v.eq_ignore_ascii_case("passive") => Ok(()),
        Some(v) if listed(READABLE_PRAGMAS, &lower) => Err(format!(
            "forbidden: PRAGMA {lower} = {v} is not allowed (the pragma may only be read)"
        )),
        _ => Err(format!("forbidden: PRAGMA {lower} is not allowed")),
    }
}

/// What the authorizer saw while a statement was compiled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// INSERT, UPDATE or DELETE of rows.
    pub writes: bool,
    /// CREATE, DROP, ALTER, REINDEX, ANALYZE.
    pub ddl: bool,
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE, END.
    pub transaction: bool,
    /// A PRAGMA.
    pub pragma: bool,
}

/// Whether SQLite is compiling a statement of the client or running one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Phase {
    /// Compiling the client's statement: actions are recorded in [`Seen`].
    #[default]
    Prepare,
    /// Running it (or compiling our own statements): nothing is recorded,
    /// and an ATTACH can only come from VACUUM.
    Run,
}

#[derive(Debug, Default)]
struct GuardState {
    phase: Phase,
    seen: Seen,
    denial: Option<String>,
}

/// State shared between the session and the callbacks it installs in SQLite
/// (which must be `Send + 'static`, hence atomics and a mutex; the session is
/// single-threaded, so none is ever contended).
#[derive(Debug)]
pub struct Shared {
    guard: Mutex<GuardState>,
    base: Instant,
    /// Nanoseconds after `base` past which the progress handler interrupts;
    /// `u64::MAX` when no deadline is set.
    deadline_ns: AtomicU64,
    timed_out: AtomicBool,
    commits: AtomicU64,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            guard: Mutex::default(),
            base: Instant::now(),
            deadline_ns: AtomicU64::new(u64::MAX),
            timed_out: AtomicBool::new(false),
            commits: AtomicU64::new(0),
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, GuardState> {
        // A panic cannot happen while the lock is held; recover anyway.
        self.guard.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts compiling a client statement: forget what the last one did.
    pub fn begin_prepare(&self) {
        let mut s = self.state();
        s.phase = Phase::Prepare;
        s.seen = Seen::default();
        s.denial = None;
    }

    /// What the client statement compiled so far does.
    pub fn seen(&self) -> Seen {
        self.state().seen
    }

    /// The client statement is compiled: what runs from now on is not
    /// recorded.
    pub fn end_prepare(&self) {
        self.state().phase = Phase::Run;
    }

    /// Why the authorizer last refused something, if it did.
    pub fn take_denial(&self) -> Option<String> {
        self.state().denial.take()
    }

    /// The authorizer callback.
    pub fn authorize(&self, ctx: AuthContext<'_>) -> Authorization {
        let mut s = self.state();
        let preparing = s.phase == Phase::Prepare;
        let refuse = |s: &mut GuardState, why: String| {
            if s.denial.is_none() {
                s.denial = Some(why);
            }
            Authorization::Deny
        };
        match ctx.action {
            AuthAction::Attach { filename } => {
                if !preparing && filename.is_empty() {
                    // Plain VACUUM attaches a temporary database (see above).
                    Authorization::Allow
                } else if !preparing {
                    refuse(
                        &mut s,
                        "forbidden: VACUUM INTO is not allowed (it would write a file \
                         other than the database)"
                            .into(),
                    )
                } else {
                    refuse(&mut s, "forbidden: ATTACH is not allowed".into())
                }
            }
            AuthAction::Detach { .. } => refuse(&mut s, "forbidden: DETACH is not allowed".into()),
            AuthAction::Pragma {
                pragma_name,
                pragma_value,
            } => {
                if preparing {
                    s.seen.pragma = true;
                }
                match pragma_verdict(pragma_name, pragma_value) {
                    Ok(()) => Authorization::Allow,
                    Err(why) => refuse(&mut s, why),
                }
            }
            AuthAction::Function { function_name }
                if function_name.eq_ignore_ascii_case("load_extension") =>
            {
                refuse(&mut s, "forbidden: load_extension() is not allowed".into())
            }
            AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => {
                if preparing {
                    s.seen.transaction = true;
                }
                Authorization::Allow
            }
            AuthAction::Insert { .. } | AuthAction::Update { .. } | AuthAction::Delete { .. } => {
                if preparing {
                    s.seen.writes = true;
                }
                Authorization::Allow
            }
            AuthAction::CreateIndex { .. }
            | AuthAction::CreateTable { .. }
            | AuthAction::CreateTempIndex { .. }
            | AuthAction::CreateTempTable { .. }
            | AuthAction::CreateTempTrigger { .. }
            | AuthAction::CreateTempView { .. }
            | AuthAction::CreateTrigger { .. }
            | AuthAction::CreateView { .. }
            | AuthAction::DropIndex { .. }
            | AuthAction::DropTable { .. }
            | AuthAction::DropTempIndex { .. }
            | AuthAction::DropTempTable { .. }
            | AuthAction::DropTempTrigger { .. }
            | AuthAction::DropTempView { .. }
            | AuthAction::DropTrigger { .. }
            | AuthAction::DropView { .. }
            | AuthAction::AlterTable { .. }
            | AuthAction::Reindex { .. }
            | AuthAction::Analyze { .. }
            | AuthAction::CreateVtable { .. }
            | AuthAction::DropVtable { .. } => {
                if preparing {
                    s.seen.ddl = true;
                }
                Authorization::Allow
            }
            _ => Authorization::Allow,
        }
    }

    /// Sets the deadline of the current request (`None`: no limit).
    pub fn set_deadline(&self, deadline: Option<Instant>) {
        let ns = deadline.map_or(u64::MAX, |d| {
            u64::try_from(d.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
        });
        self.deadline_ns.store(ns, Ordering::Relaxed);
        self.timed_out.store(false, Ordering::Relaxed);
    }

    /// Lifts the deadline for a while; returns it for [`Self::resume_deadline`].
    pub fn suspend_deadline(&self) -> u64 {
        self.deadline_ns.swap(u64::MAX, Ordering::Relaxed)
    }

    /// Restores a deadline lifted by [`Self::suspend_deadline`].
    pub fn resume_deadline(&self, saved: u64) {
        self.deadline_ns.store(saved, Ordering::Relaxed);
    }

    /// The progress handler: `true` interrupts the running statement.
    pub fn past_deadline(&self) -> bool {
        let deadline = self.deadline_ns.load(Ordering::Relaxed);
        if deadline == u64::MAX {
            return false;
        }
        let now = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if now >= deadline {
            self.timed_out.store(true, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Whether the progress handler interrupted a statement since the deadline
    /// was last set.
    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Relaxed)
    }

    /// The commit hook: counts committed transactions.
    pub fn count_commit(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// Transactions committed on this connection so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_pragmas_is_allowed() {
        for p in [
            "user_version",
            "JOURNAL_MODE",
            "page_count",
            "compile_options",
        ] {
            assert_eq!(pragma_verdict(p, None), Ok(()), "{p}");
        }
        assert_eq!(pragma_verdict("table_info", Some("t")), Ok(()));
        assert_eq!(pragma_verdict("integrity_check", Some("10")), Ok(()));
    }

    #[test]
    fn setting_is_allowed_only_for_the_harmless() {
        assert_eq!(pragma_verdict("user_version", Some("3")), Ok(()));
        assert_eq!(pragma_verdict("Foreign_Keys", Some("ON")), Ok(()));
        assert_eq!(pragma_verdict("wal_checkpoint", Some("passive")), Ok(()));
        for (p, v) in [
            ("journal_mode", Some("OFF")),
            ("synchronous", Some("OFF")),
            ("wal_checkpoint", Some("TRUNCATE")),
            ("max_page_count", Some("1")),
            ("writable_schema", None),
            ("writable_schema", Some("1")),
            ("locking_mode", Some("EXCLUSIVE")),
            ("mmap_size", Some("1")),
            ("query_only", Some("1")),
        ] {
            let err = pragma_verdict(p, v).unwrap_err();
            assert!(err.starts_with("forbidden: PRAGMA"), "{err}");
            assert!(err.contains(p), "{err}");
        }
    }
}
