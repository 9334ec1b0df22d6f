//! The release binary is fully static (no ELF interpreter), behaves on the
//! command line, and runs in the FROM-scratch worker image.
//!
//! Needs DBFORGE_WORKER_BIN (the static release binary) and
//! DBFORGE_WORKER_IMAGE (the image built from it); `make test` sets both.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run through `make test`"))
}

fn binary() -> PathBuf {
    let path = PathBuf::from(env("DBFORGE_WORKER_BIN"));
    // Relative paths (as `make test` gives) are relative to the workspace.
    if path.is_absolute() {
        path
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(path)
    }
}

/// Whether an ELF file has a PT_INTERP program header, i.e. needs a dynamic
/// loader (and so a libc) at run time. Parses the header by hand.
fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    assert!(elf.len() >= 64, "too short for an ELF header");
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not a 64-bit ELF file");
    assert_eq!(elf[5], 1, "not a little-endian ELF file");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    let ph_offset = u64_at(0x20);
    let ph_size = u16_at(0x36);
    let ph_count = u16_at(0x38);
    assert!(ph_size >= 4 && ph_count > 0, "no program headers");
    (0..ph_count).any(|i| {
        let at = ph_offset + i * ph_size;
        assert!(at + 4 <= elf.len(), "program header out of the file");
        u32_at(at) == PT_INTERP
    })
}

#[test]
fn the_release_binary_has_no_interpreter() {
    let bin = binary();
    let bytes = std::fs::read(&bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    assert!(
        !has_interpreter(&bytes),
        "{} asks for a dynamic loader: it would not start in a FROM scratch image",
        bin.display()
    );
    // The parser does see an interpreter where there is one: this test
    // program is linked dynamically.
    let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    assert!(has_interpreter(&me));
}

#[test]
fn the_command_line_is_checked() {
    let bin = binary();
    for bad in [
        &["frobnicate"][..],
        &["session"],
        &["session", "--db", "/tmp/x", "--timeout-ms", "soon"],
        &["session", "--db", "/tmp/x", "--no-such-flag"],
    ] {
        let out = Command::new(&bin).args(bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(out.stdout.is_empty(), "stdout carries the protocol only");
        assert!(!out.stderr.is_empty());
    }
}

/// Runs one session over a pipe: writes `input`, closes stdin, returns the
/// output lines and whether the process exited 0.
fn session(mut cmd: Command, input: &str) -> (Vec<serde_json::Value>, bool) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    (lines, child.wait().unwrap().success())
}

const INPUT: &str = concat!(
    r#"{"id":1,"op":"ping"}"#,
    "\n",
    r#"{"id":2,"op":{"execute":{"sql":"SELECT sqlite_version(), ?","params":[-9223372036854775808]}}}"#,
    "\n"
);

fn check(lines: &[serde_json::Value]) {
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["protocol"], dbforge_protocol::PROTOCOL_VERSION);
    assert_eq!(lines[1]["id"], 1);
    assert_eq!(lines[1]["outcome"]["ok"], "pong");
    let row = &lines[2]["outcome"]["ok"]["query"]["rows"][0];
    assert_eq!(row[0], lines[0]["sqlite_version"]);
    assert_eq!(row[1].to_string(), i64::MIN.to_string());
}

#[test]
fn it_serves_a_session_on_the_host() {
    let dir = std::env::temp_dir().join(format!("dbforge-static-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new(binary());
    cmd.args(["session", "--db"]).arg(dir.join("db.sqlite3"));
    let (lines, ok) = session(cmd, INPUT);
    let _ = std::fs::remove_dir_all(&dir);
    check(&lines);
    assert!(ok);
}

#[test]
fn it_runs_in_the_scratch_image() {
    let image = env("DBFORGE_WORKER_IMAGE");
    let run = std::env::var("DBFORGE_TEST_RUN").unwrap_or_else(|_| "dev-static".into());
    let label = format!("dbforge.test-run={run}");

    // The image holds this very binary.
    let created = Command::new("docker")
        .args(["create", "--label", &label, &image])
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let id = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let copy =
        std::env::temp_dir().join(format!("dbforge-worker-from-image-{}", std::process::id()));
    let cp = Command::new("docker")
        .args(["cp", &format!("{id}:/dbforge-worker")])
        .arg(&copy)
        .output()
        .unwrap();
    let _ = Command::new("docker").args(["rm", "-f", &id]).output();
    assert!(cp.status.success(), "{cp:?}");
    let same = std::fs::read(&copy).unwrap() == std::fs::read(binary()).unwrap();
    let _ = std::fs::remove_file(&copy);
    assert!(same, "{image} does not hold {}", binary().display());

    let mut cmd = Command::new("docker");
    cmd.args([
        "run",
        "--rm",
        "-i",
        "--label",
        &label,
        "--network",
        "none",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--tmpfs",
        "/tmp",
        &image,
        "session",
        "--db",
        "/tmp/db.sqlite3",
    ]);
    let (lines, ok) = session(cmd, INPUT);
    check(&lines);
    assert!(ok);
}
