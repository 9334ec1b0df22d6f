//! The worker as the gateway uses it: a container of the worker image on a
//! fresh named volume, two `docker exec -i` sessions at once, pipelined.
//!
//! Needs DBFORGE_WORKER_IMAGE (set by `make test`); every container and volume
//! it makes carries the label dbforge.test-run=$DBFORGE_TEST_RUN and is
//! removed by a guard, also when the test fails.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dbforge_protocol::{
    to_line, Hello, Op, Outcome, Params, Payload, Request, Response, Statement, Value,
    PROTOCOL_VERSION,
};

fn docker(args: &[&str]) -> Output {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Removes the container and the volume, whatever happens.
struct Cleanup {
    container: Option<String>,
    volume: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(c) = &self.container {
            let _ = Command::new("docker").args(["rm", "-f", c]).output();
        }
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f", &self.volume])
            .output();
    }
}

struct ExecSession {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl ExecSession {
    fn start(container: &str) -> ExecSession {
        let mut child = Command::new("docker")
            .args([
                "exec",
                "-i",
                container,
                "/dbforge-worker",
                "session",
                "--db",
                "/data/db.sqlite3",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut hello = String::new();
        stdout.read_line(&mut hello).unwrap();
        let hello: Hello =
            serde_json::from_str(&hello).unwrap_or_else(|e| panic!("not a hello: {hello:?}: {e}"));
        assert_eq!(hello.protocol, PROTOCOL_VERSION);
        ExecSession {
            child,
            stdin,
            stdout,
            next_id: 1,
        }
    }

    /// Encodes requests (ids go on from the last), returns the bytes and ids.
    fn encode(&mut self, ops: Vec<Op>) -> (Vec<u8>, Vec<u64>) {
        let mut bytes = Vec::new();
        let mut ids = Vec::new();
        for op in ops {
            let id = self.next_id;
            self.next_id += 1;
            to_line(&Request { id, op }, &mut bytes);
            ids.push(id);
        }
        (bytes, ids)
    }

    fn read_answers(stdout: &mut BufReader<ChildStdout>, ids: &[u64]) -> Vec<Outcome> {
        ids.iter()
            .map(|&id| {
                let mut line = String::new();
                let n = stdout.read_line(&mut line).unwrap();
                assert!(n > 0, "the session ended early");
                let resp: Response = serde_json::from_str(&line).unwrap();
                assert_eq!(resp.id, Some(id), "answers in request order");
                resp.outcome
            })
            .collect()
    }

    /// Sends everything, then reads all answers.
    fn call(&mut self, ops: Vec<Op>) -> Vec<Outcome> {
        let (bytes, ids) = self.encode(ops);
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(&bytes).unwrap();
        stdin.flush().unwrap();
        Self::read_answers(&mut self.stdout, &ids)
    }

    /// Closes stdin; the session must end cleanly.
    fn close(mut self) {
        drop(self.stdin.take());
        let mut rest = String::new();
        self.stdout.read_line(&mut rest).unwrap();
        assert!(rest.is_empty(), "unexpected output {rest:?}");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "session exited with {status}");
    }
}

impl Drop for ExecSession {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn sample(n: i64) -> Value {
    match n % 8 {
        0 => Value::Integer(i64::MIN + n),
        1 => Value::Integer(i64::MAX - n),
        2 => Value::Real(-0.0),
        3 => Value::Real(n as f64 + 0.25),
        4 => Value::Blob((0..=255u8).cycle().skip(n as usize).take(300).collect()),
        5 => Value::Text(format!("żółć 🦀 \"{n}\"\n")),
        6 => Value::Null,
        _ => Value::Text(String::new()),
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Real(x), Value::Real(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

const PER_SESSION: i64 = 400;

fn pipeline(session: i64) -> Vec<Op> {
    let mut ops: Vec<Op> = (0..PER_SESSION)
        .map(|n| {
            Op::Execute(Statement {
                sql: "INSERT INTO t(session, n, v) VALUES (?, ?, ?)".into(),
                params: Params::Positional(vec![
                    Value::Integer(session),
                    Value::Integer(n),
                    sample(n),
                ]),
            })
        })
        .collect();
    ops.push(Op::Execute(Statement {
        sql: "SELECT n, v FROM t WHERE session = ? ORDER BY n".into(),
        params: Params::Positional(vec![Value::Integer(session)]),
    }));
    ops
}

fn check_pipeline(outcomes: &[Outcome]) {
    assert_eq!(outcomes.len() as i64, PER_SESSION + 1);
    for o in &outcomes[..PER_SESSION as usize] {
        match o {
            Outcome::Ok(Payload::Query(q)) => assert_eq!(q.rows_changed, 1),
            other => panic!("insert failed: {other:?}"),
        }
    }
    let Outcome::Ok(Payload::Query(q)) = &outcomes[PER_SESSION as usize] else {
        panic!("{:?}", outcomes.last())
    };
    assert_eq!(q.rows.len() as i64, PER_SESSION);
    for (n, row) in q.rows.iter().enumerate() {
        assert_eq!(row[0], Value::Integer(n as i64));
        assert!(same(&row[1], &sample(n as i64)), "{n}: {:?}", row[1]);
    }
}

#[test]
fn two_pipelined_exec_sessions_share_one_database() {
    let image = std::env::var("DBFORGE_WORKER_IMAGE")
        .expect("DBFORGE_WORKER_IMAGE is not set: run through `make test`");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let run = std::env::var("DBFORGE_TEST_RUN")
        .unwrap_or_else(|_| format!("dev-{}-{}", std::process::id(), nanos % 1_000_000_007));
    let label = format!("dbforge.test-run={run}");
    let tag: String = run
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let volume = format!(
        "dbforge-test-{tag}-{}-{}",
        std::process::id(),
        nanos % 1_000_000
    );
    docker(&["volume", "create", "--label", &label, &volume]);
    let mut cleanup = Cleanup {
        container: None,
        volume: volume.clone(),
    };
    let out = docker(&[
        "run",
        "-d",
        "--label",
        &label,
        "--read-only",
        "--network",
        "none",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--tmpfs",
        "/tmp",
        "-v",
        &format!("{volume}:/data"),
        &image,
    ]);
    let container = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    cleanup.container = Some(container.clone());

    let mut a = ExecSession::start(&container);
    let mut b = ExecSession::start(&container);
    let setup = a.call(vec![Op::Execute(Statement::new(
        "CREATE TABLE t(session INTEGER, n INTEGER, v, PRIMARY KEY (session, n))",
    ))]);
    assert!(matches!(setup[0], Outcome::Ok(_)), "{setup:?}");

    // Both sessions at once, each writing all its requests before reading
    // (a writer thread per session, so full pipes cannot deadlock the test).
    let (bytes_a, ids_a) = a.encode(pipeline(1));
    let (bytes_b, ids_b) = b.encode(pipeline(2));
    let started = Instant::now();
    let (out_a, out_b) = std::thread::scope(|s| {
        let (in_a, in_b) = (a.stdin.as_mut().unwrap(), b.stdin.as_mut().unwrap());
        s.spawn(move || {
            in_a.write_all(&bytes_a)
                .and_then(|()| in_a.flush())
                .unwrap()
        });
        s.spawn(move || {
            in_b.write_all(&bytes_b)
                .and_then(|()| in_b.flush())
                .unwrap()
        });
        let (out_a, out_b) = (&mut a.stdout, &mut b.stdout);
        let ra = s.spawn(move || ExecSession::read_answers(out_a, &ids_a));
        let rb = s.spawn(move || ExecSession::read_answers(out_b, &ids_b));
        (ra.join().unwrap(), rb.join().unwrap())
    });
    println!(
        "{} pipelined requests over two exec sessions in {:?}",
        2 * (PER_SESSION + 1),
        started.elapsed()
    );
    check_pipeline(&out_a);
    check_pipeline(&out_b);

    // What one session writes, the other reads.
    let w = a.call(vec![Op::Execute(Statement::new(
        "INSERT INTO t VALUES (9, 0, 'from a')",
    ))]);
    assert!(matches!(w[0], Outcome::Ok(_)));
    let r = b.call(vec![
        Op::Execute(Statement::new("SELECT v FROM t WHERE session = 9")),
        Op::Execute(Statement::new("SELECT count(*) FROM t")),
        Op::Execute(Statement::new("PRAGMA journal_mode")),
    ]);
    let rows = |o: &Outcome| match o {
        Outcome::Ok(Payload::Query(q)) => q.rows.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(rows(&r[0]), vec![vec![Value::Text("from a".into())]]);
    assert_eq!(rows(&r[1]), vec![vec![Value::Integer(2 * PER_SESSION + 1)]]);
    assert_eq!(rows(&r[2]), vec![vec![Value::Text("wal".into())]]);
    a.close();
    b.close();

    // The idle main process stops on SIGTERM at once, not after the 10 s
    // kill timeout.
    let t0 = Instant::now();
    docker(&["stop", "-t", "10", &container]);
    let took = t0.elapsed();
    println!("docker stop took {took:?}");
    assert!(took < Duration::from_secs(8), "docker stop took {took:?}");
    let code = docker(&["inspect", "-f", "{{.State.ExitCode}}", &container]);
    assert_eq!(String::from_utf8_lossy(&code.stdout).trim(), "0");
}
