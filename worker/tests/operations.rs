//! Each operation, each value type, parameters, errors, malformed input.

mod common;

use std::collections::BTreeMap;

use common::*;
use dbforge_protocol::{
    BeginMode, Column, ErrorCode, Op, Outcome, Params, Payload, Statement, Value, PROTOCOL_VERSION,
};

#[test]
fn hello_comes_first_and_names_versions() {
    let dir = TempDir::new("hello");
    let mut session = dbforge_worker::Session::open(&dir.config());
    let mut out = Counting::default();
    session.serve(&b""[..], &mut out).unwrap();
    let (hello, answers) = parse_output(&out.bytes);
    assert_eq!(hello.protocol, PROTOCOL_VERSION);
    assert_eq!(hello.sqlite_version, rusqlite::version());
    assert_eq!(hello.worker_version, env!("CARGO_PKG_VERSION"));
    assert!(answers.is_empty());
}

#[test]
fn ping_pongs() {
    let dir = TempDir::new("ping");
    let out = run_ops(&dir.config(), vec![Op::Ping]);
    assert_eq!(out[0], Outcome::Ok(Payload::Pong));
}

#[test]
fn execute_reports_columns_rows_changes_and_rowid() {
    let dir = TempDir::new("exec");
    let out = run_ops(
        &dir.config(),
        vec![
            exec("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL)"),
            exec_p(
                "INSERT INTO t(name, score) VALUES (?, ?), (?, ?)",
                vec![
                    Value::Text("a".into()),
                    Value::Real(1.5),
                    Value::Text("b".into()),
                    Value::Null,
                ],
            ),
            exec("SELECT id, name, score, score * 2 AS twice FROM t ORDER BY id"),
            exec("UPDATE t SET score = 0"),
            exec("CREATE INDEX t_name ON t(name)"),
            exec("DELETE FROM t WHERE id = 99"),
        ],
    );
    let create = query(&out[0]);
    assert!(!create.returns_rows());
    assert_eq!(create.rows_changed, 0);
    let insert = query(&out[1]);
    assert_eq!(insert.rows_changed, 2);
    assert_eq!(insert.last_insert_rowid, 2);
    assert!(insert.columns.is_empty());
    let select = query(&out[2]);
    assert_eq!(
        select.columns,
        vec![
            Column {
                name: "id".into(),
                decl_type: Some("INTEGER".into())
            },
            Column {
                name: "name".into(),
                decl_type: Some("TEXT".into())
            },
            Column {
                name: "score".into(),
                decl_type: Some("REAL".into())
            },
            Column {
                name: "twice".into(),
                decl_type: None
            },
        ]
    );
    assert_eq!(
        select.rows,
        vec![
            vec![
                Value::Integer(1),
                Value::Text("a".into()),
                Value::Real(1.5),
                Value::Real(3.0)
            ],
            vec![
                Value::Integer(2),
                Value::Text("b".into()),
                Value::Null,
                Value::Null
            ],
        ]
    );
    assert_eq!(select.rows_changed, 0);
    assert_eq!(query(&out[3]).rows_changed, 2);
    // DDL leaves sqlite3_changes() alone: it must not be reported.
    assert_eq!(query(&out[4]).rows_changed, 0);
    assert_eq!(query(&out[5]).rows_changed, 0);
}

#[test]
fn sqlite_decides_which_statements_return_rows() {
    let dir = TempDir::new("rows");
    let out = run_ops(
        &dir.config(),
        vec![
            exec("create table t(x)"),
            exec("WITH c(n) AS (SELECT 1) SELECT n FROM c"),
            exec("PRAGMA table_info(t)"),
            exec("insert into t values (7), (8) returning x, x * 10 as y"),
            exec("  select 1 where 0  "),
            exec("VALUES (1, 2)"),
            exec("EXPLAIN SELECT 1"),
        ],
    );
    assert_eq!(query(&out[1]).rows, vec![vec![Value::Integer(1)]]);
    let info = query(&out[2]);
    assert!(info.returns_rows());
    assert_eq!(info.rows.len(), 1);
    assert_eq!(info.rows[0][1], Value::Text("x".into()));
    let ret = query(&out[3]);
    assert_eq!(
        ret.rows,
        vec![
            vec![Value::Integer(7), Value::Integer(70)],
            vec![Value::Integer(8), Value::Integer(80)]
        ]
    );
    assert_eq!(ret.rows_changed, 2);
    let empty = query(&out[4]);
    assert!(empty.returns_rows());
    assert!(empty.rows.is_empty());
    assert_eq!(query(&out[5]).rows.len(), 1);
    assert!(query(&out[6]).returns_rows());
}

#[test]
fn values_round_trip_losslessly() {
    let dir = TempDir::new("values");
    let all_bytes: Vec<u8> = (0..=255).collect();
    let values = vec![
        Value::Integer(i64::MIN),
        Value::Integer(i64::MAX),
        Value::Integer((1 << 53) + 1),
        Value::Integer(-(1 << 53) - 1),
        Value::Integer(0),
        Value::Real(-0.0),
        Value::Real(0.1),
        Value::Real(f64::MAX),
        Value::Real(f64::MIN_POSITIVE),
        Value::Real(f64::INFINITY),
        Value::Real(f64::NEG_INFINITY),
        Value::Blob(all_bytes.clone()),
        Value::Blob(vec![]),
        Value::Text(String::new()),
        Value::Null,
        Value::Text("żółć 🦀 \u{0} \"quoted\" \\ \n\t 日本語".into()),
        Value::Text(r#"{"$blob":"AA=="}"#.into()),
    ];
    let mut ops = vec![exec("CREATE TABLE v(i INTEGER PRIMARY KEY, x)")];
    for (i, v) in values.iter().enumerate() {
        ops.push(exec_p(
            "INSERT INTO v VALUES (?, ?)",
            vec![Value::Integer(i as i64), v.clone()],
        ));
    }
    ops.push(exec("SELECT x, typeof(x) FROM v ORDER BY i"));
    // Straight through, no table.
    ops.push(exec_p("SELECT ?1", vec![Value::Blob(all_bytes)]));
    let out = run_ops(&dir.config(), ops);
    let got = query(&out[values.len() + 1]);
    assert_eq!(got.rows.len(), values.len());
    for (row, want) in got.rows.iter().zip(&values) {
        match (want, &row[0]) {
            (Value::Real(a), Value::Real(b)) => {
                assert_eq!(a.to_bits(), b.to_bits(), "{a} vs {b}");
            }
            (a, b) => assert_eq!(a, b),
        }
        let ty = match want {
            Value::Null => "null",
            Value::Integer(_) => "integer",
            Value::Real(_) => "real",
            Value::Text(_) => "text",
            Value::Blob(_) => "blob",
        };
        assert_eq!(row[1], Value::Text(ty.into()), "{want:?}");
    }
    assert_eq!(
        query(&out[values.len() + 2]).rows[0][0],
        Value::Blob((0..=255).collect())
    );
}

#[test]
fn named_and_numbered_parameters() {
    let dir = TempDir::new("params");
    let named = |pairs: &[(&str, Value)]| {
        let m: BTreeMap<String, Value> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Params::Named(m)
    };
    let st = |sql: &str, params: Params| {
        Op::Execute(Statement {
            sql: sql.into(),
            params,
        })
    };
    let out = run_ops(
        &dir.config(),
        vec![
            st(
                "SELECT :a, @b, $c",
                named(&[
                    (":a", Value::Integer(1)),
                    ("b", Value::Integer(2)),
                    ("$c", Value::Integer(3)),
                ]),
            ),
            st(
                "SELECT :a + :a",
                named(&[("a", Value::Integer(21)), ("unused", Value::Null)]),
            ),
            st(
                "SELECT ?2, ?1",
                Params::Positional(vec![Value::Text("one".into()), Value::Text("two".into())]),
            ),
            st("SELECT :a, :b", named(&[("a", Value::Integer(1))])),
            st("SELECT ?, ?", Params::Positional(vec![Value::Integer(1)])),
            st("SELECT ?", Params::None),
            st("SELECT 1", Params::Positional(vec![Value::Integer(1)])),
            st("SELECT ?", named(&[("a", Value::Integer(1))])),
            // Booleans bind as integers.
            st(
                "SELECT ?",
                serde_json::from_str::<Params>("[true]").unwrap(),
            ),
        ],
    );
    assert_eq!(
        query(&out[0]).rows[0],
        vec![Value::Integer(1), Value::Integer(2), Value::Integer(3)]
    );
    assert_eq!(query(&out[1]).rows[0], vec![Value::Integer(42)]);
    assert_eq!(
        query(&out[2]).rows[0],
        vec![Value::Text("two".into()), Value::Text("one".into())]
    );
    let (code, msg) = err(&out[3]);
    assert_eq!(code, ErrorCode::BadRequest);
    assert!(msg.contains(":b"), "{msg}");
    for o in &out[4..8] {
        assert_eq!(err(o).0, ErrorCode::BadRequest, "{o:?}");
    }
    assert_eq!(query(&out[8]).rows[0], vec![Value::Integer(1)]);
}

#[test]
fn more_than_one_statement_is_refused() {
    let dir = TempDir::new("multi");
    let out = run_ops(
        &dir.config(),
        vec![
            exec("CREATE TABLE t(x)"),
            exec("INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)"),
            exec("SELECT 1; SELEC oops"),
            exec("SELECT 1; ATTACH 'x' AS y"),
            exec("SELECT count(*) FROM t;  ;; -- trailing comment\n /* block */ ;"),
            exec("  -- only a comment"),
            exec(""),
            exec("SELECT 1\0; DROP TABLE t"),
        ],
    );
    for i in [1, 2, 3] {
        let (code, msg) = err(&out[i]);
        assert_eq!(code, ErrorCode::BadRequest);
        assert!(msg.contains("one SQL statement"), "{msg}");
    }
    assert_eq!(query(&out[4]).rows[0], vec![Value::Integer(0)]);
    assert_eq!(err(&out[5]).0, ErrorCode::BadRequest);
    assert_eq!(err(&out[6]).0, ErrorCode::BadRequest);
    assert_eq!(err(&out[7]).0, ErrorCode::BadRequest);
    assert_eq!(
        rows(&dir.config(), "SELECT count(*) FROM t"),
        vec![vec![Value::Integer(0)]]
    );
}

#[test]
fn transaction_control_is_refused_in_execute_and_batch() {
    let dir = TempDir::new("txctl");
    let mut ops = vec![exec("CREATE TABLE t(x)")];
    let refused = [
        "BEGIN",
        "begin immediate",
        "BEGIN EXCLUSIVE TRANSACTION",
        "COMMIT",
        "END",
        "ROLLBACK",
        "SAVEPOINT s",
        "RELEASE s",
        "ROLLBACK TO s",
    ];
    for sql in refused {
        ops.push(exec(sql));
    }
    ops.push(Op::Batch {
        statements: vec![
            Statement::new("INSERT INTO t VALUES (1)"),
            Statement::new("COMMIT"),
        ],
    });
    ops.push(exec("SELECT count(*) FROM t"));
    let out = run_ops(&dir.config(), ops);
    for (i, sql) in refused.iter().enumerate() {
        let (code, msg) = err(&out[i + 1]);
        assert_eq!(code, ErrorCode::BadRequest, "{sql}");
        assert!(msg.contains("begin, commit and rollback"), "{sql}: {msg}");
    }
    let (code, msg) = err(&out[refused.len() + 1]);
    assert_eq!(code, ErrorCode::BadRequest);
    assert!(msg.starts_with("statement 2: "), "{msg}");
    assert_eq!(
        query(&out[refused.len() + 2]).rows[0],
        vec![Value::Integer(0)]
    );
}

#[test]
fn batch_is_all_or_nothing() {
    let dir = TempDir::new("batch");
    let s = Statement::new;
    let out = run_ops(
        &dir.config(),
        vec![
            Op::Batch {
                statements: vec![
                    s("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT UNIQUE)"),
                    Statement {
                        sql: "INSERT INTO t(v) VALUES (?)".into(),
                        params: Params::Positional(vec![Value::Text("a".into())]),
                    },
                    s("SELECT v FROM t"),
                ],
            },
            Op::Batch {
                statements: vec![
                    s("INSERT INTO t(v) VALUES ('b')"),
                    s("INSERT INTO t(v) VALUES ('a')"),
                    s("INSERT INTO t(v) VALUES ('c')"),
                ],
            },
            Op::Batch {
                statements: vec![s("INSERT INTO t(v) VALUES ('d')"), s("SELECT * FROM nope")],
            },
            Op::Batch { statements: vec![] },
            exec("SELECT v FROM t ORDER BY v"),
        ],
    );
    let Outcome::Ok(Payload::Batch(results)) = &out[0] else {
        panic!("{:?}", out[0])
    };
    assert_eq!(results.len(), 3);
    assert_eq!(results[1].rows_changed, 1);
    assert_eq!(results[2].rows, vec![vec![Value::Text("a".into())]]);
    assert_eq!(
        err(&out[1]),
        (
            ErrorCode::Constraint,
            "statement 2: UNIQUE constraint failed: t.v"
        )
    );
    assert_eq!(
        err(&out[2]),
        (ErrorCode::SqlError, "statement 2: no such table: nope")
    );
    assert_eq!(out[3], Outcome::Ok(Payload::Batch(vec![])));
    assert_eq!(query(&out[4]).rows, vec![vec![Value::Text("a".into())]]);
}

#[test]
fn begin_commit_rollback() {
    let dir = TempDir::new("txn");
    let tx = |open: bool| {
        Outcome::Ok(Payload::Transaction {
            in_transaction: open,
        })
    };
    let out = run_ops(
        &dir.config(),
        vec![
            exec("CREATE TABLE t(x UNIQUE)"),
            Op::Commit,
            Op::Rollback,
            Op::Begin {
                mode: BeginMode::Immediate,
            },
            Op::Begin {
                mode: BeginMode::Deferred,
            },
            exec("INSERT INTO t VALUES (1)"),
            // A failing statement inside leaves the transaction open.
            exec("INSERT INTO t VALUES (1)"),
            Op::Batch {
                statements: vec![
                    Statement::new("INSERT INTO t VALUES (2)"),
                    Statement::new("INSERT INTO t VALUES (1)"),
                ],
            },
            Op::Batch {
                statements: vec![Statement::new("INSERT INTO t VALUES (3)")],
            },
            Op::Commit,
            Op::Begin {
                mode: BeginMode::Deferred,
            },
            exec("INSERT INTO t VALUES (4)"),
            Op::Rollback,
            Op::Begin {
                mode: BeginMode::Exclusive,
            },
            exec("INSERT INTO t VALUES (5)"),
            // The session ends with the transaction open: rolled back.
        ],
    );
    assert_eq!(err(&out[1]).0, ErrorCode::BadRequest);
    assert_eq!(err(&out[2]).0, ErrorCode::BadRequest);
    assert_eq!(out[3], tx(true));
    assert_eq!(err(&out[4]).0, ErrorCode::BadRequest);
    assert!(is_ok(&out[5]));
    assert_eq!(err(&out[6]).0, ErrorCode::Constraint);
    assert_eq!(err(&out[7]).0, ErrorCode::Constraint);
    assert!(is_ok(&out[8]));
    assert_eq!(out[9], tx(false));
    assert_eq!(out[10], tx(true));
    assert_eq!(out[12], tx(false));
    assert_eq!(out[13], tx(true));
    assert_eq!(
        rows(&dir.config(), "SELECT x FROM t ORDER BY x"),
        vec![vec![Value::Integer(1)], vec![Value::Integer(3)]]
    );
}

#[test]
fn errors_carry_sqlites_own_message() {
    let dir = TempDir::new("errors");
    let out = run_ops(
        &dir.config(),
        vec![
            exec("SELECT * FROM foo"),
            exec("CREATE TABLE t(id INTEGER PRIMARY KEY, n NOT NULL)"),
            exec("INSERT INTO t VALUES (1, 1)"),
            exec("INSERT INTO t VALUES (1, 1)"),
            exec("INSERT INTO t VALUES (2, NULL)"),
            exec("SELEC 1"),
            exec("INSERT INTO t VALUES ('x', 1)"),
            exec("SELECT length(zeroblob(100000000))"),
        ],
    );
    assert_eq!(err(&out[0]), (ErrorCode::SqlError, "no such table: foo"));
    assert_eq!(
        err(&out[3]),
        (ErrorCode::Constraint, "UNIQUE constraint failed: t.id")
    );
    assert_eq!(
        err(&out[4]),
        (ErrorCode::Constraint, "NOT NULL constraint failed: t.n")
    );
    assert_eq!(
        err(&out[5]),
        (ErrorCode::SqlError, "near \"SELEC\": syntax error")
    );
    assert_eq!(err(&out[6]), (ErrorCode::Mismatch, "datatype mismatch"));
    assert_eq!(err(&out[7]).0, ErrorCode::TooBig);
}

#[test]
fn schema_describes_tables_and_views() {
    let dir = TempDir::new("schema");
    let out = run_ops(
        &dir.config(),
        vec![
            Op::Batch {
                statements: [
                    "CREATE TABLE parent(id INTEGER PRIMARY KEY AUTOINCREMENT, code TEXT UNIQUE)",
                    r#"CREATE TABLE "we""ird name" (
                        "col one" TEXT NOT NULL DEFAULT 'x',
                        p INTEGER REFERENCES parent(id) ON DELETE CASCADE,
                        q INTEGER REFERENCES parent,
                        PRIMARY KEY ("col one", p)
                    )"#,
                    r#"CREATE INDEX "idx ""q""" ON "we""ird name"(q, lower("col one"))"#,
                    "INSERT INTO parent(code) VALUES ('a'), ('b')",
                    "CREATE VIEW v AS SELECT id, code FROM parent",
                    "CREATE TABLE gone(x)",
                    "CREATE VIEW broken AS SELECT x FROM gone",
                    "DROP TABLE gone",
                ]
                .into_iter()
                .map(Statement::new)
                .collect(),
            },
            Op::Schema,
        ],
    );
    assert!(is_ok(&out[0]), "{:?}", out[0]);
    let Outcome::Ok(Payload::Schema(schema)) = &out[1] else {
        panic!("{:?}", out[1])
    };
    let names: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
    // sqlite_sequence (from AUTOINCREMENT) is SQLite's own: left out.
    assert_eq!(names, vec!["broken", "parent", "v", "we\"ird name"]);
    let broken = &schema.tables[0];
    assert_eq!(broken.kind, "view");
    assert!(broken.columns.is_empty());
    let parent = &schema.tables[1];
    assert_eq!(parent.kind, "table");
    assert_eq!(parent.row_count, Some(2));
    assert_eq!(parent.columns.len(), 2);
    assert_eq!(parent.columns[0].primary_key, 1);
    assert_eq!(parent.indexes.len(), 1);
    assert!(parent.indexes[0].unique);
    assert_eq!(parent.indexes[0].origin, "u");
    assert_eq!(parent.indexes[0].columns, vec![Some("code".to_string())]);
    let v = &schema.tables[2];
    assert_eq!(v.kind, "view");
    assert_eq!(v.row_count, None);
    assert_eq!(v.columns.len(), 2);
    assert!(v.sql.as_deref().unwrap().starts_with("CREATE VIEW v"));
    let w = &schema.tables[3];
    assert_eq!(w.row_count, Some(0));
    let c = &w.columns[0];
    assert_eq!(c.name, "col one");
    assert_eq!(c.decl_type, "TEXT");
    assert!(c.not_null);
    assert_eq!(c.default.as_deref(), Some("'x'"));
    assert_eq!(c.primary_key, 1);
    assert_eq!(w.columns[1].primary_key, 2);
    assert_eq!(w.columns[2].primary_key, 0);
    let idx: Vec<_> = w
        .indexes
        .iter()
        .map(|i| (i.name.as_str(), i.origin.as_str()))
        .collect();
    assert_eq!(
        idx,
        vec![
            ("idx \"q\"", "c"),
            ("sqlite_autoindex_we\"ird name_1", "pk")
        ]
    );
    assert_eq!(w.indexes[0].columns, vec![Some("q".to_string()), None]);
    assert_eq!(w.foreign_keys.len(), 2);
    let fk_p = w.foreign_keys.iter().find(|f| f.from == "p").unwrap();
    assert_eq!(fk_p.table, "parent");
    assert_eq!(fk_p.to.as_deref(), Some("id"));
    assert_eq!(fk_p.on_delete, "CASCADE");
    let fk_q = w.foreign_keys.iter().find(|f| f.from == "q").unwrap();
    assert_eq!(fk_q.to, None);
    assert_eq!(fk_q.on_update, "NO ACTION");
}

#[test]
fn broken_lines_get_bad_request_and_the_session_goes_on() {
    let dir = TempDir::new("broken");
    let mut cfg = dir.config();
    cfg.limits.max_line_bytes = 100;
    let input: Vec<Vec<u8>> = vec![
        b"not json\n".to_vec(),
        b"{\"id\": 5, \"op\": \"frobnicate\"}\n".to_vec(),
        b"{\"id\": 6}\n".to_vec(),
        b"{\"id\": 7, \"op\": {\"execute\": {}}}\n".to_vec(),
        b"{\"id\": 8, \"op\": {\"execute\": {\"sql\": \"SELECT '\xff'\"}}}\n".to_vec(),
        b"{\"op\": \"ping\"}\n".to_vec(),
        b"{\"id\": -1, \"op\": \"ping\"}\n".to_vec(),
        b"\n".to_vec(),
        [
            b"{\"id\": 9, \"op\": \"ping\", \"pad\": \"".to_vec(),
            vec![b'x'; 500],
            b"\"}\n".to_vec(),
        ]
        .concat(),
        b"{\"id\": 10, \"op\": \"ping\"}\n".to_vec(),
        b"{\"id\": 11, \"op\": {\"execute\": {\"sql\": \"SELECT ?\", \"params\": [[1]]}}}\n"
            .to_vec(),
        b"{\"id\": 12, \"op\": \"ping\"}".to_vec(),
    ];
    let answers = run_raw(&cfg, input);
    let ids: Vec<Option<u64>> = answers.iter().map(|a| a.id).collect();
    assert_eq!(
        ids,
        vec![
            None,
            Some(5),
            Some(6),
            Some(7),
            Some(8),
            None,
            None,
            None,
            None,
            Some(10),
            Some(11),
            Some(12)
        ]
    );
    for (i, a) in answers.iter().enumerate() {
        if i == 9 || i == 11 {
            assert_eq!(a.outcome, Outcome::Ok(Payload::Pong));
        } else {
            assert_eq!(err(&a.outcome).0, ErrorCode::BadRequest, "{i}: {a:?}");
        }
    }
    assert!(err(&answers[4].outcome).1.contains("UTF-8"));
    assert!(err(&answers[8].outcome).1.contains("longer than 100 bytes"));
}

#[test]
fn an_unopenable_database_answers_every_request_with_the_error() {
    let dir = TempDir::new("cantopen");
    let cfg = dbforge_worker::SessionConfig::new(dir.path().join("missing-dir/db.sqlite3"));
    let out = run_ops(&cfg, vec![Op::Ping, exec("SELECT 1")]);
    for o in &out {
        let (code, msg) = err(o);
        assert_eq!(code, ErrorCode::CantOpen);
        assert!(msg.contains("cannot open"), "{msg}");
    }
}
