//! The harness: a real gateway, in-process on 127.0.0.1:0, against the real
//! Docker daemon and real worker containers.
//!
//! Every test gets its own namespace (so tests never see each other's
//! databases) and every object carries `dbforge.test-run=$DBFORGE_TEST_RUN`;
//! a [`Namespace`] removes its containers and volumes when dropped, even when
//! the test panicked. `make test` sweeps the run's label afterwards too.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use dbforge_gateway::Config;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The worker image the tests use (built by `make test`).
pub fn worker_image() -> String {
    std::env::var("DBFORGE_WORKER_IMAGE")
        .expect("DBFORGE_WORKER_IMAGE is not set: run the tests through `make test`")
}

/// The label value marking this test run.
pub fn test_run() -> String {
    std::env::var("DBFORGE_TEST_RUN").unwrap_or_else(|_| format!("adhoc{}", std::process::id()))
}

/// A namespace of Docker objects, removed on drop.
pub struct Namespace {
    pub name: String,
}

impl Namespace {
    pub fn new() -> Namespace {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "t{:x}{:x}{}",
            std::process::id(),
            nanos,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Namespace { name }
    }

    /// Ids of this namespace's containers.
    pub fn containers(&self) -> Vec<String> {
        docker_lines(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=dbforge.namespace={}", self.name),
        ])
    }

    /// Names of this namespace's volumes.
    pub fn volumes(&self) -> Vec<String> {
        docker_lines(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("label=dbforge.namespace={}", self.name),
        ])
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let containers = self.containers();
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(containers.iter().map(String::as_str));
            let _ = Command::new("docker").args(&args).output();
        }
        let volumes = self.volumes();
        if !volumes.is_empty() {
            let mut args = vec!["volume", "rm", "-f"];
            args.extend(volumes.iter().map(String::as_str));
            let _ = Command::new("docker").args(&args).output();
        }
    }
}

/// Runs `docker ARGS` and returns its stdout's non-empty lines.
pub fn docker_lines(args: &[&str]) -> Vec<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Runs `docker ARGS`, returning whether it succeeded.
pub fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A running in-process gateway.
pub struct Gateway {
    pub base: String,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// An answer: status, headers and JSON body (`Null` when not JSON).
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The error code of an error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl Gateway {
    /// A gateway on `ns` with the given extra flags.
    pub async fn start(ns: &Namespace, extra: &[&str]) -> Gateway {
        let labels = format!("dbforge.test-run={}", test_run());
        let image = worker_image();
        let mut args = vec![
            "dbforge-gateway",
            "--listen",
            "127.0.0.1:0",
            "--namespace",
            &ns.name,
            "--worker-image",
            &image,
            "--labels",
            &labels,
            "--shutdown-grace-ms",
            "5000",
        ];
        args.extend_from_slice(extra);
        let config = <Config as clap::Parser>::try_parse_from(args).expect("test config parses");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(dbforge_gateway::run(listener, config, async {
            let _ = rx.await;
        }));
        Gateway {
            base,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Signals shutdown and waits for the gateway to finish draining.
    pub async fn stop(mut self) -> std::io::Result<()> {
        let _ = self.shutdown.take().unwrap().send(());
        self.task.take().unwrap().await.expect("gateway task joins")
    }

    /// Begins shutdown without waiting.
    pub fn begin_stop(&mut self) -> JoinHandle<std::io::Result<()>> {
        let _ = self.shutdown.take().unwrap().send(());
        self.task.take().unwrap()
    }

    pub async fn request(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(body) = body {
            req = req.json(&body);
        }
        answer(req.send().await.expect("the gateway answers")).await
    }

    /// Sends a raw body with a content type.
    pub async fn raw(&self, method: &str, path: &str, body: Vec<u8>) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let req = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .header("content-type", "application/json")
            .body(body);
        answer(req.send().await.expect("the gateway answers")).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.request("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.request("POST", path, Some(body)).await
    }

    /// Spawns `db`, asserting a 201.
    pub async fn spawn(&self, db: &str) -> Answer {
        let a = self
            .request("POST", &format!("/admin/databases/spawn/{db}"), None)
            .await;
        assert_eq!(a.status, 201, "spawn {db}: {}", a.body);
        a
    }

    /// Runs SQL on `db`.
    pub async fn query(&self, db: &str, sql: &str, params: Value) -> Answer {
        self.post(
            &format!("/api/db/{db}/query"),
            serde_json::json!({"sql": sql, "params": params}),
        )
        .await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

/// A query that counts to three million (a few hundred ms of work): sent in
/// the background, it is in flight while a test stops the gateway.
pub const SLOW_COUNT: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 3000000) SELECT count(*) AS n FROM c";

/// Sends `sql` to `url` in the background; yields (status, JSON body).
pub fn spawn_query(
    client: &reqwest::Client,
    url: String,
    sql: &'static str,
) -> JoinHandle<(u16, Value)> {
    let client = client.clone();
    tokio::spawn(async move {
        let resp = client
            .post(url)
            .json(&serde_json::json!({ "sql": sql }))
            .send()
            .await
            .expect("the gateway answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    })
}
