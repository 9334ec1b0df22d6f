//! Bad input gets a clear error with a stable code and changes nothing.

use serde_json::json;

use crate::common::{Gateway, Namespace};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_routes_methods_and_bodies() {
    let ns = Namespace::new();
    let gw = Gateway::start(&ns, &["--max-body-bytes", "4096"]).await;

    // Invalid names never reach Docker: nothing is created.
    for name in [
        "-x",
        ".hidden",
        "a%20b",
        "a%2Fb",
        "%2E%2E%2Fetc",
        "x%00",
        &"n".repeat(64),
    ] {
        let a = gw
            .request("POST", &format!("/admin/databases/spawn/{name}"), None)
            .await;
        assert_eq!(a.status, 400, "{name}: {}", a.body);
        assert_eq!(a.code(), "INVALID_NAME", "{name}");
        let q = gw
            .post(&format!("/api/db/{name}/query"), json!({"sql": "SELECT 1"}))
            .await;
        assert_eq!(q.status, 400, "{name}");
    }
    assert!(ns.containers().is_empty() && ns.volumes().is_empty());

    // Unknown routes and wrong methods.
    let a = gw.get("/nope").await;
    assert_eq!((a.status, a.code()), (404, "NOT_FOUND"));
    let a = gw.get("/api/db/x/query").await;
    assert_eq!((a.status, a.code()), (405, "METHOD_NOT_ALLOWED"));
    assert_eq!(a.headers["allow"], "POST");
    let a = gw.request("PUT", "/admin/databases", None).await;
    assert_eq!(a.status, 405);

    gw.spawn("inputs").await;
    let q = "/api/db/inputs/query";
    // Not JSON: 400. JSON of the wrong shape: 422.
    for body in [&b"{"[..], b"not json", b"", b"{\"sql\": \"x\"} trailing"] {
        let a = gw.raw("POST", q, body.to_vec()).await;
        assert_eq!(
            (a.status, a.code()),
            (400, "MALFORMED_JSON"),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    for body in [
        json!({"sql": 5}),
        json!({"query": "SELECT 1"}),
        json!([1]),
        json!({"sql": "SELECT ?", "params": [[1, 2]]}),
        json!({"sql": "SELECT ?", "params": [{"a": 1}]}),
        json!({"sql": "SELECT ?", "params": [18446744073709551615u64]}),
        json!({"sql": "SELECT ?", "params": "x"}),
    ] {
        let a = gw.post(q, body.clone()).await;
        assert_eq!(
            (a.status, a.code()),
            (422, "VALIDATION_ERROR"),
            "{body}: {}",
            a.body
        );
    }
    // Too big: 413, before the body is read whole.
    let big = json!({"sql": "SELECT ?", "params": ["x".repeat(10_000)]});
    let a = gw.post(q, big).await;
    assert_eq!((a.status, a.code()), (413, "PAYLOAD_TOO_LARGE"));

    // The worker's own refusals come through with their codes.
    let a = gw.post(q, json!({"sql": "ATTACH '/tmp/x.db' AS x"})).await;
    assert_eq!((a.status, a.code()), (403, "FORBIDDEN"), "{}", a.body);
    let a = gw.post(q, json!({"sql": "PRAGMA journal_mode=OFF"})).await;
    assert_eq!((a.status, a.code()), (403, "FORBIDDEN"), "{}", a.body);
    let a = gw.post(q, json!({"sql": "SELECT 1; SELECT 2"})).await;
    assert_eq!(a.status, 400, "{}", a.body);
    let a = gw.post(q, json!({"sql": "BEGIN"})).await;
    assert_eq!(a.status, 400, "{}", a.body);

    // Table and column names are names, never SQL.
    let weird = "we\"ird; DROP TABLE x; --";
    let created = gw
        .post(
            "/api/db/inputs/tables",
            json!({"table_name": weird, "columns": [{"name": "a b\"c", "type": "TEXT"}]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let path = format!(
        "/api/db/inputs/tables/{}/rows",
        "we%22ird%3B%20DROP%20TABLE%20x%3B%20--"
    );
    let ins = gw
        .post(
            &path,
            json!({"rows": [{"a b\"c": "v'); DROP TABLE y; --"}]}),
        )
        .await;
    assert_eq!(ins.status, 201, "{}", ins.body);
    let read = gw
        .get(&format!(
            "{path}?a%20b%22c=v%27%29%3B%20DROP%20TABLE%20y%3B%20--"
        ))
        .await;
    assert_eq!(read.body["rows_affected"], 1, "{}", read.body);
    let t = gw
        .query(
            "inputs",
            "SELECT name FROM sqlite_master WHERE type = 'table'",
            json!([]),
        )
        .await;
    assert_eq!(t.body["data"], json!([{"name": weird}]));

    // Column types cannot smuggle SQL; a bad table body is a 422.
    for body in [
        json!({"table_name": "t", "columns": [{"name": "a", "type": "TEXT); DROP TABLE x; --"}]}),
        json!({"table_name": "t", "columns": []}),
        json!({"table_name": "t"}),
        json!({"table_name": "", "columns": [{"name": "a", "type": "TEXT"}]}),
        json!({"table_name": "t", "columns": [{"name": "a", "type": "TEXT", "default": [1]}]}),
    ] {
        let a = gw.post("/api/db/inputs/tables", body.clone()).await;
        assert_eq!(a.status, 422, "{body}: {}", a.body);
    }
    // Spawn options are checked.
    let a = gw
        .post("/admin/databases/spawn/opts", json!({"synchronous": "off"}))
        .await;
    assert_eq!(a.status, 422, "{}", a.body);
    let a = gw
        .post("/admin/databases/spawn/opts", json!({"max_size_bytes": 1}))
        .await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert_eq!(ns.volumes().len(), 1, "refused spawns leave nothing behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_unreachable_is_503() {
    let ns = Namespace::new();
    let gw = Gateway::start(
        &ns,
        &["--docker-host", "unix:///nonexistent/dbforge-test.sock"],
    )
    .await;
    let root = gw.get("/").await;
    assert_eq!(root.status, 200);
    let health = gw.get("/health").await;
    assert_eq!(
        (health.status, health.code()),
        (503, "DOCKER_UNAVAILABLE"),
        "{}",
        health.body
    );
    assert!(health.body["detail"]
        .as_str()
        .unwrap()
        .contains("Docker is unavailable"));
    let spawn = gw.request("POST", "/admin/databases/spawn/x", None).await;
    assert_eq!(spawn.status, 503);
    assert_eq!(spawn.headers["retry-after"], "1");
    let list = gw.get("/admin/databases").await;
    assert_eq!(list.status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_timeout_quota_and_overload() {
    let ns = Namespace::new();
    let gw = Gateway::start(
        &ns,
        &[
            "--statement-timeout-ms",
            "300",
            "--max-inflight",
            "1",
            "--max-rows",
            "1000",
        ],
    )
    .await;
    gw.spawn("lim").await;
    let forever =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
    let a = gw.query("lim", forever, json!([])).await;
    assert_eq!((a.status, a.code()), (504, "TIMEOUT"), "{}", a.body);
    let after = gw.query("lim", "SELECT 1 AS one", json!([])).await;
    assert_eq!(
        after.body["data"],
        json!([{"one": 1}]),
        "the session serves the next request"
    );

    let many = gw
        .query(
            "lim",
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 5000) SELECT x FROM c",
            json!([]),
        )
        .await;
    assert_eq!(
        (many.status, many.code()),
        (400, "TOO_LARGE"),
        "{}",
        many.body
    );

    // Quota: a database of 128 KiB refuses writes past it and stays readable.
    let spawn = gw
        .post(
            "/admin/databases/spawn/small",
            json!({"max_size_bytes": 131072}),
        )
        .await;
    assert_eq!(spawn.status, 201, "{}", spawn.body);
    gw.query("small", "CREATE TABLE blobs (b BLOB)", json!([]))
        .await;
    let mut quota_hit = false;
    for _ in 0..64 {
        let a = gw
            .query(
                "small",
                "INSERT INTO blobs VALUES (zeroblob(8192))",
                json!([]),
            )
            .await;
        if a.status != 200 {
            assert_eq!((a.status, a.code()), (507, "QUOTA_EXCEEDED"), "{}", a.body);
            quota_hit = true;
            break;
        }
    }
    assert!(quota_hit);
    let check = gw.query("small", "PRAGMA integrity_check", json!([])).await;
    assert_eq!(
        check.body["data"][0]["integrity_check"], "ok",
        "{}",
        check.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_inflight_bound_is_503_with_retry_after() {
    let ns = Namespace::new();
    let gw = Gateway::start(
        &ns,
        &["--statement-timeout-ms", "2000", "--max-inflight", "1"],
    )
    .await;
    gw.spawn("busy").await;
    let forever =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
    // One slot in flight: of three slow requests at once, one runs (and
    // times out after 2 s) and the others are refused at once.
    let slow = || {
        let client = gw.client.clone();
        let url = format!("{}/api/db/busy/query", gw.base);
        tokio::spawn(async move {
            let resp = client
                .post(url)
                .json(&json!({"sql": forever}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: serde_json::Value = resp.json().await.unwrap();
            (
                status,
                retry_after,
                body["error"]["code"].as_str().unwrap_or("").to_owned(),
            )
        })
    };
    let tasks = [slow(), slow(), slow()];
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    outcomes.sort();
    let overloaded = (503, Some("1".to_string()), "OVERLOADED".to_string());
    assert_eq!(
        outcomes,
        vec![
            overloaded.clone(),
            overloaded,
            (504, None, "TIMEOUT".to_string())
        ]
    );
}
