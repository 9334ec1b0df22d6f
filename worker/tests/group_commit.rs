//! Group commit of pipelined writes, flushing, and sessions side by side.

mod common;

use std::time::Duration;

use common::*;
use dbforge_protocol::{ErrorCode, Op, Outcome, Request, Value};
use dbforge_worker::config::GROUP_COMMIT_MAX_STATEMENTS;

fn insert(i: i64) -> Op {
    exec_p(
        "INSERT INTO t(id, v) VALUES (?, ?)",
        vec![Value::Integer(i), Value::Integer(i)],
    )
}

fn setup(cfg: &dbforge_worker::SessionConfig) {
    let out = run_ops(
        cfg,
        vec![exec(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER UNIQUE)",
        )],
    );
    assert!(is_ok(&out[0]));
}

fn ids(cfg: &dbforge_worker::SessionConfig) -> Vec<i64> {
    rows(cfg, "SELECT id FROM t ORDER BY id")
        .into_iter()
        .map(|r| match r[0] {
            Value::Integer(i) => i,
            ref v => panic!("{v:?}"),
        })
        .collect()
}

#[test]
fn pipelined_inserts_share_one_commit_and_a_failure_fails_alone() {
    let dir = TempDir::new("group");
    let cfg = dir.config();
    setup(&cfg);
    let mut ops: Vec<Op> = (1..=100).map(insert).collect();
    // A duplicate in the middle: only it fails.
    ops.insert(50, insert(7));
    // A statement SQLite cannot compile fails alone too.
    ops.insert(60, exec("INSERT INTO nope VALUES (1)"));
    // A read joins the group and sees the group's own writes.
    ops.insert(70, exec("SELECT count(*) FROM t"));
    let n = ops.len();
    let (out, commits) = run_ops_counting(&cfg, ops, true);
    assert_eq!(commits, 1, "one group, one commit");
    for (i, o) in out.iter().enumerate() {
        match i {
            50 => assert_eq!(
                err(o),
                (ErrorCode::Constraint, "UNIQUE constraint failed: t.id")
            ),
            60 => assert_eq!(err(o), (ErrorCode::SqlError, "no such table: nope")),
            70 => assert_eq!(query(o).rows, vec![vec![Value::Integer(68)]]),
            _ => assert_eq!(query(o).rows_changed, 1, "{i}: {o:?}"),
        }
    }
    assert_eq!(out.len(), n);
    assert_eq!(ids(&cfg), (1..=100).collect::<Vec<_>>());
}

#[test]
fn the_group_is_capped_and_ends_at_anything_that_cannot_join() {
    let dir = TempDir::new("groupcap");
    let cfg = dir.config();
    setup(&cfg);
    let total = GROUP_COMMIT_MAX_STATEMENTS as i64 + 44;
    let (out, commits) = run_ops_counting(&cfg, (1..=total).map(insert).collect(), true);
    assert!(out.iter().all(is_ok));
    assert_eq!(commits, 2);

    let mut ops: Vec<Op> = (1001..=1010).map(insert).collect();
    ops.push(exec("CREATE TABLE u(x)")); // DDL: commits the group, runs alone
    ops.extend((1011..=1020).map(insert));
    ops.push(Op::Ping); // not an execute: commits the group
    ops.extend((1021..=1030).map(insert));
    let (out, commits) = run_ops_counting(&cfg, ops, true);
    assert!(out.iter().all(is_ok), "{out:?}");
    // Three groups and the CREATE TABLE.
    assert_eq!(commits, 4);
    assert_eq!(ids(&cfg).len() as i64, total + 30);
}

#[test]
fn requests_one_at_a_time_commit_one_at_a_time() {
    let dir = TempDir::new("nogroup");
    let cfg = dir.config();
    setup(&cfg);
    let (out, commits) = run_ops_counting(&cfg, (1..=20).map(insert).collect(), false);
    assert!(out.iter().all(is_ok));
    assert_eq!(commits, 20);
}

/// Whatever happens to the group, an answered success is a committed row and
/// an error is a row that is not there.
fn assert_answers_match_contents(
    cfg: &dbforge_worker::SessionConfig,
    out: &[Outcome],
    id_of: impl Fn(usize) -> Option<i64>,
) {
    let present = ids(cfg);
    for (i, o) in out.iter().enumerate() {
        if let Some(id) = id_of(i) {
            assert_eq!(
                is_ok(o),
                present.contains(&id),
                "request {i} (id {id}): {o:?}"
            );
        }
    }
}

#[test]
fn a_group_that_sqlite_rolls_back_answers_no_success() {
    let dir = TempDir::new("grouprollback");
    let mut cfg = dir.config();
    cfg.limits.max_bytes = 64 * 1024;
    cfg.limits.timeout = Duration::from_millis(200);
    setup(&cfg);
    // A write past the quota inside the group.
    let mut ops: Vec<Op> = (1..=10).map(insert).collect();
    ops.push(exec_p(
        "INSERT INTO t(id, v) VALUES (?, randomblob(200000))",
        vec![Value::Integer(11)],
    ));
    ops.extend((12..=20).map(insert));
    let (out, _) = run_ops_counting(&cfg, ops, true);
    assert_eq!(err(&out[10]).0, ErrorCode::QuotaExceeded);
    for o in &out[..10] {
        if let Outcome::Error(e) = o {
            assert_eq!(e.code, ErrorCode::Busy);
            assert!(e.message.contains("rolled back"), "{}", e.message);
        }
    }
    assert!(out[11..].iter().all(is_ok), "the session goes on");
    assert_answers_match_contents(&cfg, &out, |i| Some(i as i64 + 1));

    // A write interrupted by the time limit inside the group: SQLite rolls
    // back the whole transaction.
    let dir = TempDir::new("grouptimeout");
    let mut cfg = dir.config();
    cfg.limits.timeout = Duration::from_millis(200);
    setup(&cfg);
    let mut ops: Vec<Op> = (100..110).map(insert).collect();
    ops.push(exec(
        "INSERT INTO t(v) WITH RECURSIVE c(n) AS (SELECT 1000 UNION ALL SELECT n + 1 FROM c \
         WHERE n < 1000000000000) SELECT n FROM c",
    ));
    ops.extend((111..120).map(insert));
    let (out, _) = run_ops_counting(&cfg, ops, true);
    assert_eq!(err(&out[10]).0, ErrorCode::Timeout);
    for o in &out[..10] {
        assert_eq!(err(o).0, ErrorCode::Busy, "{o:?}");
    }
    assert!(out[11..].iter().all(is_ok));
    assert_answers_match_contents(&cfg, &out, |i| (i != 10).then_some(100 + i as i64));
    assert_eq!(
        rows(&cfg, "PRAGMA integrity_check")[0][0],
        Value::Text("ok".into())
    );
}

#[test]
fn answers_are_flushed_only_when_the_input_runs_dry() {
    let dir = TempDir::new("flush");
    let cfg = dir.config();
    setup(&cfg);
    let all: Vec<u8> = (1..=50)
        .flat_map(|i| {
            line(&Request {
                id: i,
                op: insert(i as i64),
            })
        })
        .collect();
    let mut session = dbforge_worker::Session::open(&cfg);
    let mut out = Counting::default();
    session.serve(Pieces::new(vec![all]), &mut out).unwrap();
    assert_eq!(parse_output(&out.bytes).1.len(), 50);
    // The hello, the one time the input ran dry, the end.
    assert!(out.flushes <= 3, "{} flushes", out.flushes);

    let pieces: Vec<Vec<u8>> = (51..=60)
        .map(|i| {
            line(&Request {
                id: i,
                op: insert(i as i64),
            })
        })
        .collect();
    let mut session = dbforge_worker::Session::open(&cfg);
    let mut out = Counting::default();
    session.serve(Pieces::new(pieces), &mut out).unwrap();
    assert!(out.flushes >= 11, "{} flushes", out.flushes);
}

#[test]
fn two_sessions_on_one_database_cooperate() {
    let dir = TempDir::new("two");
    let cfg = dir.config();
    setup(&cfg);
    let threads: Vec<_> = (0..2i64)
        .map(|k| {
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                // Pipelined in chunks of 25, so groups and single commits mix.
                let lines: Vec<Vec<u8>> = (0..300i64)
                    .map(|i| {
                        let id = k * 1000 + i;
                        line(&Request {
                            id: id as u64,
                            op: insert(id),
                        })
                    })
                    .collect();
                let chunks: Vec<Vec<u8>> = lines.chunks(25).map(|c| c.concat()).collect();
                run_raw(&cfg, chunks)
            })
        })
        .collect();
    for t in threads {
        let answers = t.join().unwrap();
        assert_eq!(answers.len(), 300);
        for a in answers {
            assert!(is_ok(&a.outcome), "{a:?}");
        }
    }
    assert_eq!(ids(&cfg).len(), 600);
}

#[test]
fn a_failed_commit_turns_every_held_success_into_an_error() {
    let dir = TempDir::new("commitfails");
    let cfg = dir.config();
    // Deferred foreign keys are checked at COMMIT: the group's COMMIT fails.
    let mut ops = vec![
        exec("CREATE TABLE parent(id INTEGER PRIMARY KEY)"),
        exec(
            "CREATE TABLE child(id INTEGER PRIMARY KEY, \
             p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)",
        ),
        exec("PRAGMA foreign_keys = ON"),
    ];
    for i in 1..=5 {
        ops.push(exec_p(
            "INSERT INTO child(id, p) VALUES (?, 99)",
            vec![Value::Integer(i)],
        ));
    }
    let (out, _) = run_ops_counting(&cfg, ops, true);
    assert!(out[..3].iter().all(is_ok), "{out:?}");
    for o in &out[3..] {
        let (code, msg) = err(o);
        assert_eq!(code, ErrorCode::Busy);
        assert!(
            msg.contains("COMMIT failed: FOREIGN KEY constraint failed"),
            "{msg}"
        );
    }
    assert!(rows(&cfg, "SELECT * FROM child").is_empty());
}
