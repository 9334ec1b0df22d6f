//! Arbitrary input never panics the session, never stops it before the end
//! of input, and gets exactly one answer per line, with the line's id.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use dbforge_protocol::{BeginMode, Op, Params, Request, Response, Statement, Value};
use proptest::prelude::*;
use serde_json::Value as Json;

const MAX_LINE: usize = 400;

const SQL: &[&str] = &[
    "SELECT 1",
    "SELECT ?",
    "SELECT :a",
    "CREATE TABLE IF NOT EXISTS t(x)",
    "INSERT INTO t VALUES (?)",
    "INSERT INTO t VALUES (randomblob(50)) RETURNING x",
    "SELECT * FROM t",
    "DELETE FROM t",
    "SELECT * FROM nope",
    "BEGIN",
    "COMMIT",
    "ATTACH 'x' AS y",
    "VACUUM INTO 'copy.sqlite3'",
    "VACUUM",
    "PRAGMA journal_mode = OFF",
    "PRAGMA user_version = 3",
    "SELECT 1; SELECT 2",
    "garbage (",
    "",
    "SELECT load_extension('x')",
];

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::Integer),
        any::<f64>().prop_map(Value::Real),
        ".{0,8}".prop_map(Value::Text),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(Value::Blob),
    ]
}

fn params() -> impl Strategy<Value = Params> {
    prop_oneof![
        Just(Params::None),
        prop::collection::vec(value(), 0..3).prop_map(Params::Positional),
        prop::collection::btree_map(
            prop::sample::select(vec!["a", ":a", "@b", "c"]).prop_map(str::to_owned),
            value(),
            0..3
        )
        .prop_map(|m: BTreeMap<String, Value>| Params::Named(m)),
    ]
}

fn statement() -> impl Strategy<Value = Statement> {
    (prop::sample::select(SQL), params()).prop_map(|(sql, params)| Statement {
        sql: sql.to_owned(),
        params,
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => statement().prop_map(Op::Execute),
        1 => prop::collection::vec(statement(), 0..3).prop_map(|statements| Op::Batch { statements }),
        1 => prop::sample::select(vec![BeginMode::Immediate, BeginMode::Deferred, BeginMode::Exclusive])
            .prop_map(|mode| Op::Begin { mode }),
        1 => Just(Op::Commit),
        1 => Just(Op::Rollback),
        1 => Just(Op::Schema),
        1 => Just(Op::Ping),
    ]
}

fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        (-1e9f64..1e9).prop_map(Json::from),
        ".{0,6}".prop_map(Json::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::btree_map("id|op|sql|execute|[a-z]{0,3}", inner, 0..4)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

/// One line of input (it may hold newlines of its own: then it is several).
fn line_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => (any::<u64>(), op()).prop_map(|(id, op)| serde_json::to_vec(&Request { id, op }).unwrap()),
        1 => (any::<u64>(), op()).prop_map(|(id, op)| {
            // A valid request cut short.
            let v = serde_json::to_vec(&Request { id, op }).unwrap();
            v[..v.len() / 2].to_vec()
        }),
        2 => json().prop_map(|j| serde_json::to_vec(&j).unwrap()),
        1 => (json(), op()).prop_map(|(id, op)| {
            serde_json::to_vec(&serde_json::json!({"id": id, "op": op})).unwrap()
        }),
        2 => prop::collection::vec(any::<u8>(), 0..64),
        1 => prop::collection::vec(any::<u8>(), MAX_LINE - 8..MAX_LINE + 8),
    ]
}

/// The id an answer to `line` must carry.
fn expected_id(line: &[u8]) -> Option<u64> {
    if line.len() > MAX_LINE {
        return None;
    }
    if let Ok(req) = serde_json::from_slice::<Request>(line) {
        return Some(req.id);
    }
    let text = String::from_utf8_lossy(line);
    serde_json::from_str::<Json>(&text)
        .ok()?
        .get("id")?
        .as_u64()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_line_gets_one_answer_and_nothing_panics(
        lines in prop::collection::vec(line_bytes(), 0..24),
        final_newline in any::<bool>(),
        chunk in 1usize..700,
    ) {
        let mut input = lines.join(&b'\n');
        if final_newline && !input.is_empty() {
            input.push(b'\n');
        }
        let mut expected: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
        if expected.last().is_some_and(|l| l.is_empty()) {
            expected.pop();
        }

        let dir = TempDir::new("fuzz");
        let mut cfg = dir.config();
        cfg.limits.max_line_bytes = MAX_LINE;
        cfg.limits.timeout = Duration::from_millis(500);
        let pieces: Vec<Vec<u8>> = input.chunks(chunk).map(<[u8]>::to_vec).collect();
        let mut session = dbforge_worker::Session::open(&cfg);
        let mut out = Counting::default();
        session.serve(Pieces::new(pieces), &mut out).expect("the session ends only at EOF");
        let (_, answers) = parse_output(&out.bytes);
        prop_assert_eq!(answers.len(), expected.len());
        for (answer, line) in answers.iter().zip(&expected) {
            let Response { id, .. } = answer;
            prop_assert_eq!(*id, expected_id(line), "line {:?}", String::from_utf8_lossy(line));
        }
        // No file but the database's own was created.
        for f in dir.files() {
            prop_assert!(f.starts_with("db.sqlite3"), "unexpected file {}", f);
        }
        prop_assert!(!std::path::Path::new("copy.sqlite3").exists());
    }
}
