//! The limit of SQLite itself: the scenarios' SQL run in this process with
//! rusqlite, one connection per thread, no HTTP and no JSON.

use std::path::Path;

use rusqlite::Connection;

use crate::load::{run_closed_loop_blocking, Measured, Timing};
use crate::workload::{self, Scenario, BATCH_ROWS, MIX_WRITE_TENTHS};

/// How long a connection waits for another's write lock.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Creates a database file with the scenarios' schema; `items` is filled with
/// its 100 000 rows when `with_items`. WAL journal, like every target.
pub fn make_db(path: &Path, with_items: bool) -> rusqlite::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    let conn = Connection::open(path)?;
    conn.execute_batch("PRAGMA journal_mode=WAL;")?;
    conn.execute_batch(workload::ITEMS_DDL)?;
    conn.execute_batch(workload::EVENTS_DDL)?;
    if with_items {
        conn.execute_batch(workload::ITEMS_FILL)?;
    }
    // Leave one self-contained file (others may copy it): fold the WAL back.
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    Ok(())
}

/// Opens a connection as the targets do: WAL, the given `synchronous`.
fn open(path: &Path, synchronous: &str) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(&format!("PRAGMA synchronous={synchronous};"))?;
    Ok(conn)
}

/// Runs `scenario` on a fresh database at `path` with `threads` threads.
pub fn run(
    scenario: Scenario,
    path: &Path,
    threads: usize,
    timing: Timing,
) -> Result<Measured, String> {
    make_db(path, scenario.needs_items()).map_err(|e| format!("make {}: {e}", path.display()))?;
    let synchronous = scenario.synchronous().unwrap_or("full");
    let mut callers = Vec::with_capacity(threads);
    for i in 0..threads {
        let conn = open(path, synchronous).map_err(|e| e.to_string())?;
        let mut rng = fastrand::Rng::with_seed(0x1e55 + i as u64);
        callers.push(move || op(&conn, scenario, &mut rng).map_err(|e| e.to_string()));
    }
    Ok(run_closed_loop_blocking(callers, timing))
}

/// One request's worth of SQL.
fn op(conn: &Connection, scenario: Scenario, rng: &mut fastrand::Rng) -> rusqlite::Result<()> {
    match scenario {
        Scenario::PointRead => read(conn, rng),
        Scenario::Insert => insert(conn, rng),
        Scenario::Insert100 => {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let mut stmt = conn.prepare_cached(workload::INSERT_SQL)?;
            for _ in 0..BATCH_ROWS {
                if let Err(e) = stmt.execute((workload::random_payload(rng), rng.i64(0..1_000_000)))
                {
                    conn.execute_batch("ROLLBACK")?;
                    return Err(e);
                }
            }
            conn.execute_batch("COMMIT")
        }
        Scenario::Mix => {
            if rng.u32(0..10) < MIX_WRITE_TENTHS {
                insert(conn, rng)
            } else {
                read(conn, rng)
            }
        }
    }
}

fn read(conn: &Connection, rng: &mut fastrand::Rng) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(workload::READ_SQL)?;
    let (id, name, score): (i64, String, i64) = stmt
        .query_row([workload::random_key(rng)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    std::hint::black_box((id, name, score));
    Ok(())
}

fn insert(conn: &Connection, rng: &mut fastrand::Rng) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(workload::INSERT_SQL)?;
    stmt.execute((workload::random_payload(rng), rng.i64(0..1_000_000)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_scenario_runs_without_errors() {
        let dir = std::env::temp_dir().join(format!("dbforge-inproc-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let timing = Timing {
            warmup: Duration::from_millis(20),
            // Long enough for a few commits even when fsync is slow and the
            // machine is busy.
            duration: Duration::from_millis(400),
        };
        for s in Scenario::ALL {
            let m = run(s, &dir.join("t.sqlite3"), 2, timing).unwrap();
            assert_eq!(m.errors, 0, "{s:?}: {:?}", m.first_error);
            assert!(!m.hist.is_empty(), "{s:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
