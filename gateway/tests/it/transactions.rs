//! Interactive transactions, each pinned to a session of its own.

use std::time::Duration;

use serde_json::json;

use crate::common::{Gateway, Namespace};

async fn begin(gw: &Gateway, db: &str) -> String {
    let a = gw
        .post(&format!("/api/db/{db}/transactions"), json!({}))
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["message"], "Transaction begun.");
    a.body["transaction_id"].as_str().unwrap().to_owned()
}

async fn count(gw: &Gateway, db: &str) -> i64 {
    let a = gw.query(db, "SELECT count(*) AS n FROM t", json!([])).await;
    a.body["data"][0]["n"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_rollback_isolation_and_errors() {
    let ns = Namespace::new();
    let gw = Gateway::start(&ns, &[]).await;
    gw.spawn("tx").await;
    gw.query(
        "tx",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)",
        json!([]),
    )
    .await;

    // Commit: invisible outside until committed.
    let tx = begin(&gw, "tx").await;
    let path = |action: &str| format!("/api/db/tx/transactions/{tx}/{action}");
    let ins = gw
        .post(
            &path("query"),
            json!({"sql": "INSERT INTO t (v) VALUES (?)", "params": ["a"]}),
        )
        .await;
    assert_eq!(ins.status, 200, "{}", ins.body);
    let inside = gw
        .post(
            &path("query"),
            json!({"sql": "SELECT count(*) AS n FROM t"}),
        )
        .await;
    assert_eq!(
        inside.body["data"][0]["n"], 1,
        "the transaction sees its own write"
    );
    let batch = gw
        .post(
            &path("batch"),
            json!({"statements": [{"sql": "INSERT INTO t (v) VALUES ('b')"}, {"sql": "SELECT v FROM t ORDER BY id"}]}),
        )
        .await;
    assert_eq!(
        batch.body["results"][1]["data"],
        json!([{"v": "a"}, {"v": "b"}])
    );
    assert_eq!(
        count(&gw, "tx").await,
        0,
        "others do not see uncommitted rows"
    );
    let done = gw.post(&path("commit"), json!({})).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["message"], "Transaction committed.");
    assert_eq!(count(&gw, "tx").await, 2);
    let again = gw.post(&path("commit"), json!({})).await;
    assert_eq!((again.status, again.code()), (404, "TRANSACTION_NOT_FOUND"));

    // Rollback: nothing stays.
    let tx = begin(&gw, "tx").await;
    gw.post(
        &format!("/api/db/tx/transactions/{tx}/query"),
        json!({"sql": "INSERT INTO t (v) VALUES ('c')"}),
    )
    .await;
    let rb = gw
        .post(&format!("/api/db/tx/transactions/{tx}/rollback"), json!({}))
        .await;
    assert_eq!(rb.status, 200, "{}", rb.body);
    assert_eq!(count(&gw, "tx").await, 2);

    // An error ends the transaction and rolls it back.
    let tx = begin(&gw, "tx").await;
    let tx_path = format!("/api/db/tx/transactions/{tx}/query");
    let q = |sql: &str| gw.post(&tx_path, json!({ "sql": sql }));
    assert_eq!(q("INSERT INTO t (v) VALUES ('d')").await.status, 200);
    let dup = q("INSERT INTO t (v) VALUES ('a')").await;
    assert_eq!(
        (dup.status, dup.code()),
        (400, "CONSTRAINT"),
        "{}",
        dup.body
    );
    assert!(dup.body["detail"].as_str().unwrap().contains("rolled back"));
    let after = q("SELECT 1").await;
    assert_eq!((after.status, after.code()), (404, "TRANSACTION_NOT_FOUND"));
    assert_eq!(
        count(&gw, "tx").await,
        2,
        "the failed transaction left nothing"
    );

    // A transaction id is bound to its database.
    gw.spawn("other").await;
    let tx = begin(&gw, "tx").await;
    let wrong = gw
        .post(
            &format!("/api/db/other/transactions/{tx}/query"),
            json!({"sql": "SELECT 1"}),
        )
        .await;
    assert_eq!(wrong.status, 404);
    let unknown = gw
        .post("/api/db/tx/transactions/nope/commit", json!({}))
        .await;
    assert_eq!(unknown.status, 404);
    gw.post(&format!("/api/db/tx/transactions/{tx}/rollback"), json!({}))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_holds_the_write_lock_until_it_ends() {
    let ns = Namespace::new();
    let gw = Gateway::start(
        &ns,
        &["--max-tx-per-db", "1", "--tx-idle-timeout-ms", "800"],
    )
    .await;
    gw.spawn("lock").await;
    gw.query("lock", "CREATE TABLE t (v TEXT)", json!([])).await;

    let tx = begin(&gw, "lock").await;
    let second = gw.post("/api/db/lock/transactions", json!({})).await;
    assert_eq!(
        (second.status, second.code()),
        (429, "TOO_MANY_TRANSACTIONS")
    );
    assert_eq!(second.headers["retry-after"], "1");

    // A write outside waits for the transaction's lock, then goes through.
    let outside = {
        let client = gw.client.clone();
        let url = format!("{}/api/db/lock/query", gw.base);
        tokio::spawn(async move {
            let r = client
                .post(url)
                .json(&json!({"sql": "INSERT INTO t VALUES ('outside')"}))
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !outside.is_finished(),
        "the outside write waits for the lock"
    );
    let ins = gw
        .post(
            &format!("/api/db/lock/transactions/{tx}/query"),
            json!({"sql": "INSERT INTO t VALUES ('inside')"}),
        )
        .await;
    assert_eq!(ins.status, 200);
    let commit = gw
        .post(&format!("/api/db/lock/transactions/{tx}/commit"), json!({}))
        .await;
    assert_eq!(commit.status, 200);
    assert_eq!(outside.await.unwrap(), 200);
    assert_eq!(count(&gw, "lock").await, 2);

    // An idle transaction is rolled back after its timeout.
    let tx = begin(&gw, "lock").await;
    gw.post(
        &format!("/api/db/lock/transactions/{tx}/query"),
        json!({"sql": "INSERT INTO t VALUES ('abandoned')"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let late = gw
        .post(&format!("/api/db/lock/transactions/{tx}/commit"), json!({}))
        .await;
    assert_eq!((late.status, late.code()), (404, "TRANSACTION_NOT_FOUND"));
    assert_eq!(
        count(&gw, "lock").await,
        2,
        "the abandoned write was rolled back"
    );
    // And its lock is gone: writes go through at once.
    let w = gw
        .query("lock", "INSERT INTO t VALUES ('free')", json!([]))
        .await;
    assert_eq!(w.status, 200);
}
