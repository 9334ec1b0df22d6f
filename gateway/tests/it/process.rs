//! The gateway as a process: flags from the environment, SIGTERM drains
//! in-flight requests and exits 0.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{spawn_query, test_run, worker_image, Namespace, SLOW_COUNT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let ns = Namespace::new();
    // A free port: bind, read it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_dbforge-gateway"))
        .env("DBFORGE_LISTEN", format!("127.0.0.1:{port}"))
        .env("DBFORGE_NAMESPACE", &ns.name)
        .env("DBFORGE_WORKER_IMAGE", worker_image())
        .env("DBFORGE_LABELS", format!("dbforge.test-run={}", test_run()))
        .env("DBFORGE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gateway binary starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(format!("{base}/health")).send().await {
            assert_eq!(r.status(), 200);
            break;
        }
        assert!(Instant::now() < deadline, "the gateway came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let spawn = client
        .post(format!("{base}/admin/databases/spawn/proc"))
        .send()
        .await
        .unwrap();
    assert_eq!(spawn.status(), 201);

    let slow = spawn_query(&client, format!("{base}/api/db/proc/query"), SLOW_COUNT);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let (status, body) = slow.await.unwrap();
    assert_eq!(status, 200, "the in-flight request completes: {body}");
    assert_eq!(body["data"], json!([{"n": 3000000}]));
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "SIGTERM exits 0");
    // Every request was logged (method, route, database, status, time),
    // and the buffered lines were written out before exit.
    let logs = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "method=GET route=\"health\"",
        "method=POST route=\"spawn\" db=proc status=201",
        "method=POST route=\"query\" db=proc status=200",
        "shut down",
    ] {
        assert!(logs.contains(needle), "{needle} in logs:\n{logs}");
    }
    assert!(
        client.get(format!("{base}/")).send().await.is_err(),
        "nothing listens after exit"
    );
}
