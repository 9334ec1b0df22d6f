//! Restarts, killed workers, deletes, draining, and many requests in flight.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{docker_ok, spawn_query, Gateway, Namespace, SLOW_COUNT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_restart_keeps_and_readopts_everything() {
    let ns = Namespace::new();
    let gw = Gateway::start(&ns, &[]).await;
    gw.spawn("keep").await;
    gw.query("keep", "CREATE TABLE notes (body TEXT)", json!([]))
        .await;
    let w = gw
        .query(
            "keep",
            "INSERT INTO notes VALUES (?)",
            json!(["remember me"]),
        )
        .await;
    assert_eq!(w.status, 200, "{}", w.body);
    gw.stop().await.expect("clean shutdown");

    let gw = Gateway::start(&ns, &[]).await;
    let list = gw.get("/admin/databases").await;
    assert_eq!(list.body.as_array().unwrap().len(), 1, "{}", list.body);
    assert_eq!(list.body[0]["name"], "keep");
    let r = gw.query("keep", "SELECT body FROM notes", json!([])).await;
    assert_eq!(r.body["data"], json!([{"body": "remember me"}]));
    let again = gw
        .request("POST", "/admin/databases/spawn/keep", None)
        .await;
    assert_eq!(
        again.status, 200,
        "re-adopted, not re-created: {}",
        again.body
    );
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_container_under_load() {
    let ns = Namespace::new();
    let gw = Gateway::start(&ns, &[]).await;
    let spawned = gw.spawn("victim").await;
    let container = spawned.body["container_id"].as_str().unwrap().to_owned();
    gw.query(
        "victim",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
        json!([]),
    )
    .await;

    // Eight clients write as fast as they can while the container is killed.
    let stop_at = Instant::now() + Duration::from_secs(4);
    let mut clients = Vec::new();
    for c in 0..8 {
        let client = gw.client.clone();
        let url = format!("{}/api/db/victim/query", gw.base);
        clients.push(tokio::spawn(async move {
            let (mut ok, mut unavailable, mut acked) = (0, 0, Vec::new());
            let mut i = 0;
            while Instant::now() < stop_at {
                i += 1;
                let v = format!("{c}-{i}");
                let resp = client
                    .post(&url)
                    .json(&json!({"sql": "INSERT INTO t (v) VALUES (?)", "params": [v]}))
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let retry_after = resp.headers().get("retry-after").cloned();
                let body: serde_json::Value = resp.json().await.unwrap();
                match status {
                    200 => {
                        ok += 1;
                        acked.push(v);
                    }
                    503 => {
                        let code = body["error"]["code"].as_str().unwrap().to_owned();
                        assert!(
                            ["WORKER_UNAVAILABLE", "POOL_TIMEOUT"].contains(&code.as_str()),
                            "{body}"
                        );
                        assert!(retry_after.is_some(), "503s say when to retry");
                        unavailable += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => panic!("unexpected {other}: {body}"),
                }
            }
            (ok, unavailable, acked)
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(docker_ok(&["kill", &container]), "docker kill works");

    let mut acked = Vec::new();
    let mut failures = 0;
    for c in clients {
        let (ok, unavailable, mut a) = c.await.unwrap();
        assert!(ok > 0);
        failures += unavailable;
        acked.append(&mut a);
    }
    // The database is back (woken on demand) and every acknowledged write
    // is in it.
    let r = gw.query("victim", "SELECT v FROM t", json!([])).await;
    assert_eq!(r.status, 200, "the next request works: {}", r.body);
    let stored: std::collections::HashSet<String> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["v"].as_str().unwrap().to_owned())
        .collect();
    for v in &acked {
        assert!(stored.contains(v), "acknowledged write {v} was lost");
    }
    eprintln!(
        "kill under load: {} acknowledged writes, {failures} retryable failures",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_container_and_data() {
    let ns = Namespace::new();
    let gw = Gateway::start(&ns, &[]).await;
    gw.spawn("gone").await;
    gw.query("gone", "CREATE TABLE t (a)", json!([])).await;
    let d = gw.request("DELETE", "/admin/databases/gone", None).await;
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.body["message"], "Database deleted successfully.");
    assert!(ns.containers().is_empty());
    assert!(ns.volumes().is_empty());
    let q = gw.query("gone", "SELECT 1", json!([])).await;
    assert_eq!(q.status, 404);
    let d = gw.request("DELETE", "/admin/databases/gone", None).await;
    assert_eq!((d.status, d.code()), (404, "DATABASE_NOT_FOUND"));
    // A new database of the same name starts empty.
    gw.spawn("gone").await;
    let q = gw
        .query("gone", "SELECT count(*) AS n FROM sqlite_master", json!([]))
        .await;
    assert_eq!(q.body["data"], json!([{"n": 0}]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_in_flight_each_get_their_own_answer() {
    let ns = Namespace::new();
    let gw = Gateway::start(&ns, &[]).await;
    gw.spawn("pipe").await;
    let mut tasks = Vec::new();
    for i in 0..200i64 {
        let client = gw.client.clone();
        let url = format!("{}/api/db/pipe/query", gw.base);
        tasks.push(tokio::spawn(async move {
            let body: serde_json::Value = client
                .post(url)
                .json(&json!({"sql": "SELECT ? AS i, ? * 2 AS twice", "params": [i, i]}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (i, body)
        }));
    }
    for t in tasks {
        let (i, body) = t.await.unwrap();
        assert_eq!(body["data"], json!([{"i": i, "twice": i * 2}]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests() {
    let ns = Namespace::new();
    let mut gw = Gateway::start(&ns, &[]).await;
    gw.spawn("drain").await;
    let slow = spawn_query(
        &gw.client,
        format!("{}/api/db/drain/query", gw.base),
        SLOW_COUNT,
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let server = gw.begin_stop();
    let (status, body) = slow.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], json!([{"n": 3000000}]));
    server.await.unwrap().expect("the gateway exits cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_or_paused_containers_are_woken_by_the_next_query() {
    let ns = Namespace::new();
    let gw = Gateway::start(&ns, &["--statement-timeout-ms", "500"]).await;
    let spawned = gw.spawn("sleepy").await;
    let container = spawned.body["container_id"].as_str().unwrap().to_owned();
    gw.query("sleepy", "CREATE TABLE t (v)", json!([])).await;
    gw.query("sleepy", "INSERT INTO t VALUES (1)", json!([]))
        .await;
    for (stop, state) in [("stop", "exited"), ("pause", "paused")] {
        assert!(docker_ok(&[stop, &container]), "docker {stop}");
        let list = gw.get("/admin/databases").await;
        assert_eq!(list.body[0]["status"], state, "{}", list.body);
        // The session opened before died with a stopped container (503),
        // or froze with a paused one, which the watchdog ends (504): at
        // most one such answer, then the database is back.
        let mut answer = gw.query("sleepy", "SELECT v FROM t", json!([])).await;
        if answer.status != 200 {
            assert!(
                ["WORKER_UNAVAILABLE", "WORKER_TIMEOUT"].contains(&answer.code()),
                "{}",
                answer.body
            );
            answer = gw.query("sleepy", "SELECT v FROM t", json!([])).await;
        }
        assert_eq!(answer.status, 200, "after docker {stop}: {}", answer.body);
        assert_eq!(answer.body["data"], json!([{"v": 1}]));
    }
}
