//! The safety rules: refusals, time limit, quota, answer caps.

mod common;

use std::time::{Duration, Instant};

use common::*;
use dbforge_protocol::{BeginMode, ErrorCode, Op, Outcome, Payload, Statement, Value};

fn forbidden(o: &Outcome, needle: &str) {
    let (code, msg) = err(o);
    assert_eq!(code, ErrorCode::Forbidden, "{msg}");
    assert!(msg.starts_with("forbidden: "), "{msg}");
    assert!(msg.contains(needle), "{msg:?} should name {needle:?}");
}

#[test]
fn attach_and_detach_are_forbidden() {
    let dir = TempDir::new("attach");
    let other = dir.path().join("other.sqlite3");
    let out = run_ops(
        &dir.config(),
        vec![
            exec(&format!("ATTACH DATABASE '{}' AS other", other.display())),
            exec("ATTACH ':memory:' AS m"),
            exec("ATTACH '' AS t"),
            exec("DETACH DATABASE temp"),
            Op::Batch {
                statements: vec![Statement::new(format!("ATTACH '{}' AS o", other.display()))],
            },
            exec("SELECT 1"),
        ],
    );
    forbidden(&out[0], "ATTACH is not allowed");
    forbidden(&out[1], "ATTACH");
    forbidden(&out[2], "ATTACH");
    forbidden(&out[3], "DETACH is not allowed");
    let (code, msg) = err(&out[4]);
    assert_eq!(code, ErrorCode::Forbidden);
    assert_eq!(msg, "statement 1: forbidden: ATTACH is not allowed");
    assert!(is_ok(&out[5]));
    assert!(!other.exists());
}

#[test]
fn load_extension_is_forbidden() {
    let dir = TempDir::new("loadext");
    let out = run_ops(
        &dir.config(),
        vec![
            exec("SELECT load_extension('/tmp/evil.so')"),
            exec("SELECT LOAD_EXTENSION('/tmp/evil.so', 'init')"),
            exec("CREATE TABLE t(x)"),
            exec("CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT load_extension('x'); END"),
            exec("INSERT INTO t VALUES (1)"),
        ],
    );
    forbidden(&out[0], "load_extension() is not allowed");
    forbidden(&out[1], "load_extension");
    // A trigger is compiled with the statement that fires it.
    if is_ok(&out[3]) {
        forbidden(&out[4], "load_extension");
    } else {
        forbidden(&out[3], "load_extension");
    }
}

#[test]
fn vacuum_into_is_forbidden_and_creates_no_file() {
    let dir = TempDir::new("vacuum");
    let target = dir.path().join("copy.sqlite3");
    let relative = "copy2.sqlite3";
    let out = run_ops(
        &dir.config(),
        vec![
            exec("CREATE TABLE t(x)"),
            exec(&format!("INSERT INTO t {}", series(1000))),
            exec(&format!("VACUUM INTO '{}'", target.display())),
            exec(&format!("vacuum main into '{relative}'")),
            exec_p(
                "VACUUM INTO ?",
                vec![Value::Text(target.display().to_string())],
            ),
            exec("VACUUM INTO '/tmp/dbforge-vacuum-into-test.sqlite3'"),
            exec("DELETE FROM t WHERE x > 10"),
            // Plain VACUUM only rewrites the database itself: allowed.
            exec("VACUUM"),
            exec("SELECT count(*) FROM t"),
            exec("PRAGMA integrity_check"),
        ],
    );
    for o in &out[2..6] {
        forbidden(o, "VACUUM INTO is not allowed");
    }
    assert!(!target.exists());
    assert!(!std::path::Path::new(relative).exists());
    assert!(!std::path::Path::new("/tmp/dbforge-vacuum-into-test.sqlite3").exists());
    assert!(is_ok(&out[7]), "{:?}", out[7]);
    assert_eq!(query(&out[8]).rows, vec![vec![Value::Integer(10)]]);
    assert_eq!(query(&out[9]).rows, vec![vec![Value::Text("ok".into())]]);
    // Only the database and its WAL files are in the directory.
    for f in dir.files() {
        assert!(f.starts_with("db.sqlite3"), "unexpected file {f}");
    }
}

#[test]
fn state_changing_pragmas_are_forbidden() {
    let dir = TempDir::new("pragmas");
    let refused = [
        ("PRAGMA journal_mode = OFF", "journal_mode"),
        ("PRAGMA journal_mode=MEMORY", "journal_mode"),
        ("pragma main.journal_mode = 'delete'", "journal_mode"),
        ("PRAGMA synchronous = OFF", "synchronous"),
        ("PRAGMA synchronous=0", "synchronous"),
        ("PRAGMA writable_schema = ON", "writable_schema"),
        ("PRAGMA writable_schema", "writable_schema"),
        ("PRAGMA locking_mode = EXCLUSIVE", "locking_mode"),
        ("PRAGMA max_page_count = 100000000", "max_page_count"),
        ("PRAGMA page_size = 512", "page_size"),
        ("PRAGMA auto_vacuum = FULL", "auto_vacuum"),
        ("PRAGMA mmap_size = 1000000", "mmap_size"),
        ("PRAGMA cache_size = -1000000", "cache_size"),
        ("PRAGMA temp_store = MEMORY", "temp_store"),
        (
            "PRAGMA ignore_check_constraints = ON",
            "ignore_check_constraints",
        ),
        ("PRAGMA query_only = ON", "query_only"),
        ("PRAGMA busy_timeout = 0", "busy_timeout"),
        ("PRAGMA wal_checkpoint(TRUNCATE)", "wal_checkpoint"),
        ("PRAGMA schema_version = 1", "schema_version"),
        ("PRAGMA cell_size_check = ON", "cell_size_check"),
        ("PRAGMA case_sensitive_like = ON", "case_sensitive_like"),
        ("PRAGMA shrink_memory", "shrink_memory"),
        ("PRAGMA hard_heap_limit = 1", "hard_heap_limit"),
    ];
    let mut ops: Vec<Op> = refused.iter().map(|(sql, _)| exec(sql)).collect();
    // Table-valued pragma functions run the pragma through the authorizer too.
    ops.push(exec("SELECT * FROM pragma_journal_mode('OFF')"));
    ops.push(exec("SELECT * FROM pragma_synchronous(0)"));
    ops.push(exec("PRAGMA journal_mode"));
    ops.push(exec("PRAGMA synchronous"));
    let out = run_ops(&dir.config(), ops);
    for (o, (sql, name)) in out.iter().zip(refused) {
        let (code, msg) = err(o);
        assert_eq!(code, ErrorCode::Forbidden, "{sql}: {msg}");
        assert!(msg.contains(&format!("PRAGMA {name}")), "{sql}: {msg}");
    }
    let n = refused.len();
    for o in &out[n..n + 2] {
        assert!(!is_ok(o) || query(o).rows.is_empty(), "{o:?}");
    }
    // Nothing changed: still WAL and FULL (2).
    assert_eq!(
        query(&out[n + 2]).rows,
        vec![vec![Value::Text("wal".into())]]
    );
    assert_eq!(query(&out[n + 3]).rows, vec![vec![Value::Integer(2)]]);
}

#[test]
fn a_refusal_is_reported_only_for_its_own_request() {
    let dir = TempDir::new("stale");
    let out = run_ops(
        &dir.config(),
        vec![
            exec("CREATE TABLE p(id INTEGER PRIMARY KEY)"),
            exec("CREATE TABLE c(p REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)"),
            exec("PRAGMA foreign_keys = ON"),
            Op::Begin {
                mode: BeginMode::Immediate,
            },
            exec("INSERT INTO c VALUES (1)"),
            // The authorizer refuses the (never run) second statement...
            exec("SELECT 1; ATTACH 'x' AS y"),
            // ...and the COMMIT that fails next fails for its own reason.
            Op::Commit,
            Op::Rollback,
        ],
    );
    assert_eq!(err(&out[5]).0, ErrorCode::BadRequest);
    assert_eq!(
        err(&out[6]),
        (ErrorCode::Constraint, "FOREIGN KEY constraint failed")
    );
    assert!(is_ok(&out[7]));
}

#[test]
fn harmless_pragmas_work() {
    let dir = TempDir::new("harmless");
    let readers = [
        "PRAGMA table_info(t)",
        "PRAGMA table_xinfo('t')",
        "PRAGMA index_list(t)",
        "PRAGMA index_info(t_x)",
        "PRAGMA foreign_key_list(t)",
        "PRAGMA integrity_check",
        "PRAGMA quick_check",
        "PRAGMA page_count",
        "PRAGMA page_size",
        "PRAGMA freelist_count",
        "PRAGMA user_version",
        "PRAGMA application_id",
        "PRAGMA journal_mode",
        "PRAGMA synchronous",
        "PRAGMA compile_options",
        "PRAGMA table_list",
        "PRAGMA foreign_key_check",
        "PRAGMA data_version",
        "PRAGMA max_page_count",
        "PRAGMA encoding",
        "PRAGMA collation_list",
        "PRAGMA function_list",
        "PRAGMA pragma_list",
        "PRAGMA database_list",
        "PRAGMA busy_timeout",
        "PRAGMA foreign_keys",
        "SELECT name FROM pragma_table_info('t')",
        "PRAGMA wal_checkpoint",
        "PRAGMA wal_checkpoint(PASSIVE)",
        "PRAGMA optimize",
    ];
    let mut ops = vec![exec("CREATE TABLE t(x)"), exec("CREATE INDEX t_x ON t(x)")];
    ops.extend(readers.iter().map(|s| exec(s)));
    ops.extend(
        [
            "PRAGMA user_version = 42",
            "PRAGMA application_id = 7",
            "PRAGMA foreign_keys = ON",
            "PRAGMA defer_foreign_keys = ON",
            "PRAGMA recursive_triggers = ON",
            "PRAGMA user_version",
            "PRAGMA foreign_keys",
        ]
        .iter()
        .map(|s| exec(s)),
    );
    let out = run_ops(&dir.config(), ops);
    for (o, sql) in out[2..].iter().zip(readers.iter().chain([""; 7].iter())) {
        assert!(is_ok(o), "{sql}: {o:?}");
    }
    let n = out.len();
    assert_eq!(query(&out[n - 2]).rows, vec![vec![Value::Integer(42)]]);
    assert_eq!(query(&out[n - 1]).rows, vec![vec![Value::Integer(1)]]);
    // The quota is in force.
    let max_pages = query(&out[2 + 18]);
    assert_eq!(max_pages.rows, vec![vec![Value::Integer((1 << 30) / 4096)]]);
}

#[test]
fn defensive_mode_blocks_schema_tampering() {
    let dir = TempDir::new("defensive");
    let out = run_ops(
        &dir.config(),
        vec![
            exec("CREATE TABLE t(x)"),
            exec("UPDATE sqlite_schema SET sql = 'CREATE TABLE t(y)' WHERE name = 't'"),
            exec("DELETE FROM sqlite_master"),
        ],
    );
    assert!(!is_ok(&out[1]));
    assert!(!is_ok(&out[2]));
}

/// `SELECT value FROM generate_series(1, n)` without the series extension.
fn series(n: u64) -> String {
    format!(
        "WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < {n}) \
         SELECT value FROM s"
    )
}

const FOREVER: &str =
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000000) \
     SELECT count(*) FROM c";

#[test]
fn a_request_past_its_time_limit_is_interrupted() {
    let dir = TempDir::new("timeout");
    let mut cfg = dir.config();
    cfg.limits.timeout = Duration::from_millis(100);
    let t0 = Instant::now();
    let out = run_ops(
        &cfg,
        vec![
            exec("CREATE TABLE t(x)"),
            exec(FOREVER),
            exec("SELECT 42"),
            // A read that times out inside a transaction leaves it open.
            Op::Begin {
                mode: BeginMode::Immediate,
            },
            exec("INSERT INTO t VALUES (1)"),
            exec(FOREVER),
            exec("INSERT INTO t VALUES (2)"),
            Op::Commit,
            // A write that times out makes SQLite roll the transaction back:
            // the answer says so and the session knows it is closed.
            Op::Begin {
                mode: BeginMode::Immediate,
            },
            exec("INSERT INTO t VALUES (3)"),
            exec(
                "INSERT INTO t WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c \
                 WHERE n < 1000000000000) SELECT n FROM c",
            ),
            Op::Commit,
            exec("SELECT x FROM t ORDER BY x"),
            Op::Batch {
                statements: vec![
                    Statement::new("INSERT INTO t VALUES (4)"),
                    Statement::new(FOREVER),
                ],
            },
            Op::Schema,
        ],
    );
    let elapsed = t0.elapsed();
    let (code, msg) = err(&out[1]);
    assert_eq!(code, ErrorCode::Timeout);
    assert!(msg.contains("100 ms"), "{msg}");
    assert_eq!(query(&out[2]).rows, vec![vec![Value::Integer(42)]]);
    assert_eq!(err(&out[5]).0, ErrorCode::Timeout);
    assert!(is_ok(&out[6]));
    assert_eq!(
        out[7],
        Outcome::Ok(Payload::Transaction {
            in_transaction: false
        })
    );
    let (code, msg) = err(&out[10]);
    assert_eq!(code, ErrorCode::Timeout);
    assert!(msg.contains("rolled back the open transaction"), "{msg}");
    assert_eq!(err(&out[11]).0, ErrorCode::BadRequest);
    assert_eq!(
        query(&out[12]).rows,
        vec![vec![Value::Integer(1)], vec![Value::Integer(2)]]
    );
    let (code, msg) = err(&out[13]);
    assert_eq!(code, ErrorCode::Timeout);
    assert!(msg.starts_with("statement 2: "), "{msg}");
    assert!(matches!(out[14], Outcome::Ok(Payload::Schema(_))));
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert_eq!(
        rows(&dir.config(), "SELECT count(*) FROM t"),
        vec![vec![Value::Integer(2)]]
    );
}

#[test]
fn a_write_past_the_quota_fails_and_the_database_stays_sound() {
    let dir = TempDir::new("quota");
    let mut cfg = dir.config();
    cfg.limits.max_bytes = 128 * 1024;
    let mut ops = vec![exec("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)")];
    for _ in 0..40 {
        ops.push(exec("INSERT INTO t(b) VALUES (randomblob(8000))"));
    }
    ops.push(exec("PRAGMA integrity_check"));
    ops.push(exec("SELECT count(*) FROM t"));
    let out = run_ops(&cfg, ops);
    let first_full = out
        .iter()
        .position(|o| !is_ok(o))
        .expect("the quota is reached");
    assert!(first_full > 5, "{first_full}");
    let (code, msg) = err(&out[first_full]);
    assert_eq!(code, ErrorCode::QuotaExceeded);
    assert!(msg.contains("database or disk is full"), "{msg}");
    let n = out.len();
    assert_eq!(
        query(&out[n - 2]).rows,
        vec![vec![Value::Text("ok".into())]]
    );
    let count = &query(&out[n - 1]).rows[0][0];
    assert_eq!(*count, Value::Integer(first_full as i64 - 1));
    // Still readable and deletable from a new session; deleting frees room.
    let out = run_ops(
        &cfg,
        vec![
            exec("SELECT count(*) FROM t"),
            exec("DELETE FROM t WHERE id > 2"),
            exec("INSERT INTO t(b) VALUES (randomblob(8000))"),
            exec("PRAGMA integrity_check"),
        ],
    );
    assert_eq!(query(&out[0]).rows[0][0], *count);
    assert!(is_ok(&out[2]), "{:?}", out[2]);
    assert_eq!(query(&out[3]).rows, vec![vec![Value::Text("ok".into())]]);
    let size = std::fs::metadata(dir.db()).unwrap().len();
    assert!(size <= 128 * 1024, "{size}");
}

#[test]
fn answers_over_the_row_or_byte_cap_are_refused() {
    let dir = TempDir::new("toolarge");
    let mut cfg = dir.config();
    cfg.limits.max_rows = 10;
    cfg.limits.max_answer_bytes = 10_000;
    let out = run_ops(
        &cfg,
        vec![
            exec(&series(10)),
            exec(&series(11)),
            exec(&series(100_000_000)),
            exec("SELECT randomblob(5000)"),
            exec("SELECT randomblob(9000)"),
            exec("SELECT zeroblob(1000000000)"),
            exec("CREATE TABLE t(x)"),
            // A write whose answer is refused is undone, not committed.
            exec(&format!("INSERT INTO t {} RETURNING x", series(20))),
            exec("SELECT count(*) FROM t"),
            Op::Batch {
                statements: vec![
                    Statement::new("INSERT INTO t VALUES (1)"),
                    Statement::new(series(6)),
                    Statement::new(series(6)),
                ],
            },
            exec("SELECT count(*) FROM t"),
        ],
    );
    assert_eq!(query(&out[0]).rows.len(), 10);
    for i in [1, 2, 4, 7] {
        let (code, msg) = err(&out[i]);
        assert_eq!(code, ErrorCode::TooLarge, "{i}: {msg}");
    }
    assert!(err(&out[1]).1.contains("more than 10 rows"));
    assert!(err(&out[4]).1.contains("larger than 10000 bytes"));
    assert!(is_ok(&out[3]));
    assert!(!is_ok(&out[5]));
    assert_eq!(query(&out[8]).rows, vec![vec![Value::Integer(0)]]);
    let (code, msg) = err(&out[9]);
    assert_eq!(code, ErrorCode::TooLarge);
    assert!(msg.starts_with("statement 3: "), "{msg}");
    assert_eq!(query(&out[10]).rows, vec![vec![Value::Integer(0)]]);
}
