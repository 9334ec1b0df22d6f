//! The scenarios' schema, SQL and request bodies, shared by every target so
//! that each one runs exactly the same statements.

use std::sync::Arc;

use bytes::Bytes;
use hyper::Method;
use serde::Serialize;

use crate::http::{Call, CallMaker};

/// Rows in the `items` table that point reads hit.
pub const ITEMS: i64 = 100_000;
/// Rows in one bulk-insert request.
pub const BATCH_ROWS: usize = 100;
/// Share of inserts in the mixed scenario, in tenths (1 = 10 %).
pub const MIX_WRITE_TENTHS: u32 = 1;

/// The table that point reads hit.
pub const ITEMS_DDL: &str =
    "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score INTEGER NOT NULL)";
/// The table that inserts go to.
pub const EVENTS_DDL: &str =
    "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, payload TEXT NOT NULL, n INTEGER NOT NULL)";
/// Fills `items` with [`ITEMS`] rows in one statement.
pub const ITEMS_FILL: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) \
     INSERT INTO items (id, name, score) SELECT x, 'item-' || x || '-' || hex(randomblob(6)), (x * 7919) % 1000 FROM c";
/// The point read.
pub const READ_SQL: &str = "SELECT id, name, score FROM items WHERE id = ?";
/// The single-row insert.
pub const INSERT_SQL: &str = "INSERT INTO events (payload, n) VALUES (?, ?)";

/// What a scenario does per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// A point read by primary key, random key over 100 000 rows.
    PointRead,
    /// A single-row insert, one transaction each, at synchronous=FULL.
    Insert,
    /// 100 rows inserted in one request (one transaction).
    #[value(name = "insert-100")]
    Insert100,
    /// 90 % point reads, 10 % single-row inserts.
    #[value(name = "mix-90-10")]
    Mix,
}

impl Scenario {
    /// Every load scenario, in run order.
    pub const ALL: [Scenario; 4] = [
        Scenario::PointRead,
        Scenario::Insert,
        Scenario::Insert100,
        Scenario::Mix,
    ];

    /// The short name used in tables, JSON and database names.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::PointRead => "point-read",
            Scenario::Insert => "insert",
            Scenario::Insert100 => "insert-100",
            Scenario::Mix => "mix-90-10",
        }
    }

    /// Whether its database needs the 100 000-row `items` table.
    pub fn needs_items(self) -> bool {
        matches!(self, Scenario::PointRead | Scenario::Mix)
    }

    /// The `synchronous` setting its database is spawned with: inserts are
    /// measured at FULL, as the targets say; the rest at the server's default.
    pub fn synchronous(self) -> Option<&'static str> {
        match self {
            Scenario::Insert | Scenario::Insert100 => Some("full"),
            Scenario::PointRead | Scenario::Mix => None,
        }
    }

    /// Rows written per request (for rows/s).
    pub fn rows_per_request(self) -> Option<f64> {
        match self {
            Scenario::Insert => Some(1.0),
            Scenario::Insert100 => Some(BATCH_ROWS as f64),
            Scenario::Mix => Some(f64::from(MIX_WRITE_TENTHS) / 10.0),
            Scenario::PointRead => None,
        }
    }
}

/// A random key of `items`.
pub fn random_key(rng: &mut fastrand::Rng) -> i64 {
    rng.i64(1..=ITEMS)
}

/// A random event payload (24 characters).
pub fn random_payload(rng: &mut fastrand::Rng) -> String {
    format!("event-{:016x}00", rng.u64(..))
}

/// JSON body of the point read through `/query`.
pub fn read_body(key: i64) -> Bytes {
    Bytes::from(format!(r#"{{"sql":"{READ_SQL}","params":[{key}]}}"#))
}

/// JSON body of the single-row insert through `/query`.
pub fn insert_body(rng: &mut fastrand::Rng) -> Bytes {
    let payload = random_payload(rng);
    let n = rng.i64(0..1_000_000);
    Bytes::from(format!(
        r#"{{"sql":"{INSERT_SQL}","params":["{payload}",{n}]}}"#
    ))
}

/// JSON body of a [`BATCH_ROWS`]-row insert through `/tables/events/rows`.
pub fn rows_body(rng: &mut fastrand::Rng) -> Bytes {
    let rows: Vec<serde_json::Value> = (0..BATCH_ROWS)
        .map(|_| serde_json::json!({"payload": random_payload(rng), "n": rng.i64(0..1_000_000)}))
        .collect();
    Bytes::from(serde_json::json!({ "rows": rows }).to_string())
}

/// Request makers for the gateway's API (and the baseline server's, which
/// serves the same routes), with the substring a good answer contains.
pub fn api_calls(scenario: Scenario, db: &str) -> (CallMaker, &'static [u8]) {
    let query = format!("/api/db/{db}/query");
    match scenario {
        Scenario::PointRead => (
            Arc::new(move |rng| post(&query, read_body(random_key(rng)))),
            br#""data":[{"#,
        ),
        Scenario::Insert => (
            Arc::new(move |rng| post(&query, insert_body(rng))),
            br#""rows_affected":1"#,
        ),
        Scenario::Insert100 => {
            let rows = format!("/api/db/{db}/tables/events/rows");
            // Bodies are made ahead so that building 100 rows of JSON per
            // request does not load the client; rows need not be unique.
            let mut seed = fastrand::Rng::with_seed(100);
            let bodies: Arc<Vec<Bytes>> = Arc::new((0..32).map(|_| rows_body(&mut seed)).collect());
            (
                Arc::new(move |rng| post(&rows, bodies[rng.usize(..bodies.len())].clone())),
                br#""rows_affected":100"#,
            )
        }
        Scenario::Mix => (
            Arc::new(move |rng| {
                if rng.u32(0..10) < MIX_WRITE_TENTHS {
                    post(&query, insert_body(rng))
                } else {
                    post(&query, read_body(random_key(rng)))
                }
            }),
            br#""rows_affected":"#,
        ),
    }
}

/// Request maker for Datasette's point read: the same SQL through its JSON
/// API, the key bound as a named parameter.
pub fn datasette_read(db: &str) -> (CallMaker, &'static [u8]) {
    let prefix = format!(
        "/{db}.json?_shape=array&sql={}&id=",
        READ_SQL
            .replace(' ', "+")
            .replace('?', ":id")
            .replace(',', "%2C")
            .replace('=', "%3D")
    );
    (
        Arc::new(move |rng| Call {
            method: Method::GET,
            path: format!("{prefix}{}", random_key(rng)),
            body: Bytes::new(),
        }),
        br#""id":"#,
    )
}

fn post(path: &str, body: Bytes) -> Call {
    Call {
        method: Method::POST,
        path: path.to_string(),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_the_gateway_accepts() {
        let mut rng = fastrand::Rng::with_seed(1);
        let v: serde_json::Value = serde_json::from_slice(&read_body(42)).unwrap();
        assert_eq!(v["params"][0], 42);
        assert_eq!(v["sql"], READ_SQL);
        let v: serde_json::Value = serde_json::from_slice(&insert_body(&mut rng)).unwrap();
        assert_eq!(v["params"].as_array().unwrap().len(), 2);
        let v: serde_json::Value = serde_json::from_slice(&rows_body(&mut rng)).unwrap();
        assert_eq!(v["rows"].as_array().unwrap().len(), BATCH_ROWS);
    }

    #[test]
    fn datasette_query_binds_the_key() {
        let (make, _) = datasette_read("items");
        let c = make(&mut fastrand::Rng::with_seed(1));
        assert!(c.path.starts_with("/items.json?_shape=array&sql=SELECT+id%2C+name%2C+score+FROM+items+WHERE+id+%3D+:id&id="));
    }

    #[test]
    fn the_fill_statement_makes_every_key() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(ITEMS_DDL).unwrap();
        conn.execute_batch(ITEMS_FILL).unwrap();
        let (n, max): (i64, i64) = conn
            .query_row("SELECT count(*), max(id) FROM items", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((n, max), (ITEMS, ITEMS));
    }
}
