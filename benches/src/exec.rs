//! Baselines at the `docker exec` level, with bollard, against a worker
//! container this benchmark creates itself (labelled so it can always be
//! removed):
//! - the naive design: a new `docker exec` of the worker for every request;
//! - a warm session per caller, one request at a time (the exec path's floor
//!   for the gateway's design, without HTTP in front);
//! - Docker's own cold start: create + start a container, exec the worker,
//!   first answer.

use std::collections::HashMap;
use std::path::Path;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::Docker;
use dbforge_protocol::{Hello, Op, Outcome, Params, Payload, Request, Response, Statement, Value};
use futures_util::{Stream, StreamExt};
use hdrhistogram::Histogram;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::load::{new_histogram, record, Caller};
use crate::workload;

/// The worker binary inside its image.
pub const WORKER_BIN: &str = "/dbforge-worker";
/// Where the database file sits inside the container.
pub const CONTAINER_DB: &str = "/data/db.sqlite3";
/// Label on everything this benchmark creates in Docker, valued
/// `bench-RUN`: the same label the gateway puts on a test run's objects
/// (`DBFORGE_LABELS`), so `scripts/sweep.sh bench-RUN` removes them all.
pub const RUN_LABEL: &str = "dbforge.test-run";
/// Longest stderr kept from a session, for error messages.
const STDERR_KEEP: usize = 2048;

type Output = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

/// Connects to the local Docker daemon at the daemon's API version.
pub async fn docker() -> Result<Docker, String> {
    Docker::connect_with_local_defaults()
        .map_err(|e| format!("docker: {e}"))?
        .negotiate_version()
        .await
        .map_err(|e| format!("docker version: {e}"))
}

/// Creates and starts a worker container named `name` whose `/data` is the
/// host directory `data_dir`. Returns its id.
pub async fn start_worker(
    docker: &Docker,
    image: &str,
    name: &str,
    run_id: &str,
    data_dir: &Path,
) -> Result<String, String> {
    let data_dir = data_dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        labels: Some(HashMap::from([(
            RUN_LABEL.to_string(),
            format!("bench-{run_id}"),
        )])),
        // No network, like the gateway's database containers: setting up a
        // bridge endpoint is a large part of a container's start.
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{}:/data", data_dir.display())]),
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptionsBuilder::new().name(name).build();
    let id = docker
        .create_container(Some(opts), body)
        .await
        .map_err(|e| format!("create container {name}: {e}"))?
        .id;
    if let Err(e) = docker.start_container(&id, None).await {
        remove(docker, &id).await;
        return Err(format!("start container {name}: {e}"));
    }
    Ok(id)
}

/// Removes a container and its anonymous volumes, whatever its state.
pub async fn remove(docker: &Docker, id: &str) {
    let opts = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    let _ = docker.remove_container(id, Some(opts)).await;
}

/// One exec'd worker session: lines in, lines out.
pub struct Session {
    /// The worker's stdin.
    input: Pin<Box<dyn AsyncWrite + Send>>,
    /// The worker's stdout and stderr, in frames that are not lines.
    output: Output,
    /// Bytes of stdout read but not yet returned as a line.
    buf: Vec<u8>,
    /// The start of the worker's stderr, for error messages.
    stderr: Vec<u8>,
    /// Next request id.
    next_id: u64,
}

impl Session {
    /// Execs the worker in `container` and reads its Hello.
    pub async fn open(docker: &Docker, container: &str) -> Result<(Session, Hello), String> {
        let exec = docker
            .create_exec(
                container,
                CreateExecOptions {
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(false),
                    cmd: Some(vec![WORKER_BIN, "session", "--db", CONTAINER_DB]),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("create_exec: {e}"))?;
        let started = docker
            .start_exec(
                &exec.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(|e| format!("start_exec: {e}"))?;
        let StartExecResults::Attached { output, input } = started else {
            return Err("start_exec: detached".into());
        };
        let mut session = Session {
            input,
            output,
            buf: Vec::with_capacity(4096),
            stderr: Vec::new(),
            next_id: 1,
        };
        let line = session.read_line().await?;
        let hello: Hello = serde_json::from_slice(&line).map_err(|e| {
            format!(
                "worker hello: {e}: {}",
                String::from_utf8_lossy(&line[..line.len().min(300)])
            )
        })?;
        Ok((session, hello))
    }

    /// Sends one request line without waiting for its answer.
    pub async fn send(&mut self, op: Op) -> Result<u64, String> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line = Vec::with_capacity(128);
        dbforge_protocol::to_line(&Request { id, op }, &mut line);
        self.input
            .write_all(&line)
            .await
            .map_err(|e| format!("write: {e}"))?;
        self.input
            .flush()
            .await
            .map_err(|e| format!("flush: {e}"))?;
        Ok(id)
    }

    /// Half-closes stdin: the worker sees end of input.
    pub async fn close_input(&mut self) -> Result<(), String> {
        self.input
            .shutdown()
            .await
            .map_err(|e| format!("shutdown: {e}"))
    }

    /// Reads the answer to request `id` and checks that it succeeded.
    pub async fn answer(&mut self, id: u64) -> Result<Payload, String> {
        let line = self.read_line().await?;
        let resp: Response = serde_json::from_slice(&line).map_err(|e| {
            format!(
                "answer: {e}: {}",
                String::from_utf8_lossy(&line[..line.len().min(300)])
            )
        })?;
        if resp.id != Some(id) {
            return Err(format!("answer for {:?}, expected {id}", resp.id));
        }
        match resp.outcome {
            Outcome::Ok(p) => Ok(p),
            Outcome::Error(e) => Err(format!("worker: {e}")),
        }
    }

    /// One request, one answer.
    pub async fn request(&mut self, op: Op) -> Result<Payload, String> {
        let id = self.send(op).await?;
        self.answer(id).await
    }

    /// The next complete stdout line, reassembled from the stream's frames.
    async fn read_line(&mut self) -> Result<Vec<u8>, String> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let rest = self.buf.split_off(pos + 1);
                let mut line = std::mem::replace(&mut self.buf, rest);
                line.pop();
                return Ok(line);
            }
            match self.output.next().await {
                Some(Ok(LogOutput::StdOut { message })) => self.buf.extend_from_slice(&message),
                Some(Ok(LogOutput::StdErr { message })) => {
                    let room = STDERR_KEEP.saturating_sub(self.stderr.len());
                    self.stderr
                        .extend_from_slice(&message[..message.len().min(room)]);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("exec output: {e}")),
                None => {
                    return Err(format!(
                        "worker ended; stdout {:?}; stderr {:?}",
                        String::from_utf8_lossy(&self.buf),
                        String::from_utf8_lossy(&self.stderr)
                    ))
                }
            }
        }
    }
}

/// The point read as a worker request.
pub fn read_op(key: i64) -> Op {
    Op::Execute(Statement {
        sql: workload::READ_SQL.to_string(),
        params: Params::Positional(vec![Value::Integer(key)]),
    })
}

/// Checks that a point read found its row.
fn one_row(p: Payload) -> Result<(), String> {
    match p {
        Payload::Query(q) if q.rows.len() == 1 => Ok(()),
        other => Err(format!("expected one row, got {other:?}")),
    }
}

/// The naive design: every request is a new `docker exec` of the worker,
/// which opens the database, answers one point read and exits.
pub struct NaiveExecCaller {
    /// Docker client (one connection per request, as bollard does).
    docker: Docker,
    /// The worker container.
    container: String,
    /// Key source.
    rng: fastrand::Rng,
}

impl NaiveExecCaller {
    /// `n` callers.
    pub fn many(docker: &Docker, container: &str, n: usize) -> Vec<NaiveExecCaller> {
        (0..n)
            .map(|i| NaiveExecCaller {
                docker: docker.clone(),
                container: container.to_string(),
                rng: fastrand::Rng::with_seed(0xe1ec + i as u64),
            })
            .collect()
    }
}

impl Caller for NaiveExecCaller {
    async fn call(&mut self) -> Result<(), String> {
        let (mut s, _) = Session::open(&self.docker, &self.container).await?;
        let id = s.send(read_op(workload::random_key(&mut self.rng))).await?;
        s.close_input().await?;
        one_row(s.answer(id).await?)
    }
}

/// A warm exec session per caller, one request in flight at a time.
pub struct WarmExecCaller {
    /// The open session.
    session: Session,
    /// Key source.
    rng: fastrand::Rng,
}

impl WarmExecCaller {
    /// Opens `n` sessions.
    pub async fn many(
        docker: &Docker,
        container: &str,
        n: usize,
    ) -> Result<Vec<WarmExecCaller>, String> {
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            let (session, _) = Session::open(docker, container).await?;
            v.push(WarmExecCaller {
                session,
                rng: fastrand::Rng::with_seed(0x3a2e + i as u64),
            });
        }
        Ok(v)
    }

    /// Ends the session cleanly.
    pub async fn close(mut self) {
        let _ = self.session.close_input().await;
    }
}

impl Caller for WarmExecCaller {
    async fn call(&mut self) -> Result<(), String> {
        one_row(
            self.session
                .request(read_op(workload::random_key(&mut self.rng)))
                .await?,
        )
    }
}

/// Docker's cold start, `samples` times: create and start a worker container
/// on an empty data directory, exec a session, first answer to `SELECT 1`.
/// Each container is removed before the next sample (not timed).
pub async fn cold_start(
    docker: &Docker,
    image: &str,
    run_id: &str,
    scratch: &Path,
    samples: usize,
) -> Result<Histogram<u64>, String> {
    let mut hist = new_histogram();
    for i in 0..samples {
        let dir = scratch.join(format!("cold-{i}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        open_to_all(&dir)?;
        let name = format!("dbforge-bench-{run_id}-cold-{i}");
        let t0 = Instant::now();
        let id = start_worker(docker, image, &name, run_id, &dir).await?;
        let answered = async {
            let (mut s, _) = Session::open(docker, &id).await?;
            s.request(Op::Execute(Statement::new("SELECT 1"))).await
        }
        .await;
        let elapsed = t0.elapsed();
        remove(docker, &id).await;
        let _ = std::fs::remove_dir_all(&dir);
        answered?;
        record(&mut hist, elapsed);
    }
    Ok(hist)
}

/// Makes `path` writable by whatever user the worker runs as.
pub fn open_to_all(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if path.is_dir() { 0o777 } else { 0o666 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

/// Waits until a fresh session in `container` answers, for at most `limit`.
pub async fn wait_ready(
    docker: &Docker,
    container: &str,
    limit: Duration,
) -> Result<Hello, String> {
    let deadline = Instant::now() + limit;
    loop {
        match Session::open(docker, container).await {
            Ok((mut s, hello)) => {
                let _ = s.close_input().await;
                return Ok(hello);
            }
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
