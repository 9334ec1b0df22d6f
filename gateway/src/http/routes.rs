//! Routing: (method, path) to a [`Route`] with no HTTP left in it, so that
//! routing is tested without sockets.

use std::borrow::Cow;

use hyper::Method;

use crate::error::ApiError;

/// Every route of the API. Names are still raw (percent-decoded) strings:
/// validating them is the handlers' job, so an invalid database name is a
/// 400 that states the rule rather than a 404.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /`
    Root,
    /// `GET /health`
    Health,
    /// `GET /admin/databases`
    ListDatabases,
    /// `POST /admin/databases/spawn/{db}`
    Spawn(String),
    /// `POST /admin/databases/prune/{db}`
    Prune(String),
    /// `GET /admin/databases/{db}`
    Describe(String),
    /// `DELETE /admin/databases/{db}`
    Delete(String),
    /// `POST /api/db/{db}/query`
    Query(String),
    /// `POST /api/db/{db}/batch`
    Batch(String),
    /// `GET /api/db/{db}/schema`
    Schema(String),
    /// `POST /api/db/{db}/transactions`
    Begin(String),
    /// `POST /api/db/{db}/transactions/{tx}/query`
    TxQuery(String, String),
    /// `POST /api/db/{db}/transactions/{tx}/batch`
    TxBatch(String, String),
    /// `POST /api/db/{db}/transactions/{tx}/commit`
    Commit(String, String),
    /// `POST /api/db/{db}/transactions/{tx}/rollback`
    Rollback(String, String),
    /// `POST /api/db/{db}/tables`
    CreateTable(String),
    /// `GET /api/db/{db}/tables/{table}/rows`
    ReadRows(String, String),
    /// `POST /api/db/{db}/tables/{table}/rows`
    InsertRows(String, String),
}

impl Route {
    /// A short name for logs (no user data in it).
    pub fn label(&self) -> &'static str {
        match self {
            Route::Root => "root",
            Route::Health => "health",
            Route::ListDatabases => "list_databases",
            Route::Spawn(_) => "spawn",
            Route::Prune(_) => "prune",
            Route::Describe(_) => "describe",
            Route::Delete(_) => "delete",
            Route::Query(_) => "query",
            Route::Batch(_) => "batch",
            Route::Schema(_) => "schema",
            Route::Begin(_) => "begin",
            Route::TxQuery(..) => "tx_query",
            Route::TxBatch(..) => "tx_batch",
            Route::Commit(..) => "commit",
            Route::Rollback(..) => "rollback",
            Route::CreateTable(_) => "create_table",
            Route::ReadRows(..) => "read_rows",
            Route::InsertRows(..) => "insert_rows",
        }
    }

    /// The database the route is about, if any.
    pub fn db(&self) -> Option<&str> {
        match self {
            Route::Root | Route::Health | Route::ListDatabases => None,
            Route::Spawn(d)
            | Route::Prune(d)
            | Route::Describe(d)
            | Route::Delete(d)
            | Route::Query(d)
            | Route::Batch(d)
            | Route::Schema(d)
            | Route::Begin(d)
            | Route::TxQuery(d, _)
            | Route::TxBatch(d, _)
            | Route::Commit(d, _)
            | Route::Rollback(d, _)
            | Route::CreateTable(d)
            | Route::ReadRows(d, _)
            | Route::InsertRows(d, _) => Some(d),
        }
    }
}

/// Finds the route of a request.
pub fn route(method: &Method, path: &str) -> Result<Route, ApiError> {
    // One trailing slash is the same route (`/admin/databases/`).
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    let raw: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut segs = Vec::with_capacity(raw.len());
    for s in &raw {
        segs.push(percent_decode(s, false).ok_or_else(|| {
            ApiError::Validation("the path is not valid percent-encoded UTF-8".into())
        })?);
    }
    let s: Vec<&str> = segs.iter().map(|seg| seg.as_ref()).collect();
    // (route for GET, for POST, for DELETE); None where the path is unknown.
    let (get, post, delete): (Option<Route>, Option<Route>, Option<Route>) = match s.as_slice() {
        [""] => (Some(Route::Root), None, None),
        ["health"] => (Some(Route::Health), None, None),
        ["admin", "databases"] => (Some(Route::ListDatabases), None, None),
        ["admin", "databases", "spawn", db] => (None, Some(Route::Spawn(db.to_string())), None),
        ["admin", "databases", "prune", db] => (None, Some(Route::Prune(db.to_string())), None),
        ["admin", "databases", db] => (
            Some(Route::Describe(db.to_string())),
            None,
            Some(Route::Delete(db.to_string())),
        ),
        ["api", "db", db, "query"] => (None, Some(Route::Query(db.to_string())), None),
        ["api", "db", db, "batch"] => (None, Some(Route::Batch(db.to_string())), None),
        ["api", "db", db, "schema"] => (Some(Route::Schema(db.to_string())), None, None),
        ["api", "db", db, "tables"] => (None, Some(Route::CreateTable(db.to_string())), None),
        ["api", "db", db, "transactions"] => (None, Some(Route::Begin(db.to_string())), None),
        ["api", "db", db, "transactions", tx, action] => {
            let (db, tx) = (db.to_string(), tx.to_string());
            let route = match *action {
                "query" => Route::TxQuery(db, tx),
                "batch" => Route::TxBatch(db, tx),
                "commit" => Route::Commit(db, tx),
                "rollback" => Route::Rollback(db, tx),
                _ => return Err(ApiError::RouteNotFound),
            };
            (None, Some(route), None)
        }
        ["api", "db", db, "tables", table, "rows"] => (
            Some(Route::ReadRows(db.to_string(), table.to_string())),
            Some(Route::InsertRows(db.to_string(), table.to_string())),
            None,
        ),
        _ => return Err(ApiError::RouteNotFound),
    };
    let allow = match (&get, &post, &delete) {
        (Some(_), None, None) => "GET, HEAD",
        (None, Some(_), None) => "POST",
        (Some(_), Some(_), None) => "GET, HEAD, POST",
        (Some(_), None, Some(_)) => "GET, HEAD, DELETE",
        _ => "GET, HEAD, POST, DELETE",
    };
    let found = match *method {
        Method::GET | Method::HEAD => get,
        Method::POST => post,
        Method::DELETE => delete,
        _ => None,
    };
    found.ok_or(ApiError::MethodNotAllowed { allow })
}

/// Decodes `%XX` escapes (and `+` as space when `plus_is_space`, as in query
/// strings). `None` for a bad escape or invalid UTF-8.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<Cow<'_, str>> {
    if !(s.contains('%') || plus_is_space && s.contains('+')) {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// Parses a query string into decoded `(key, value)` pairs, in order.
pub fn query_pairs(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut pairs = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let bad =
            || ApiError::Validation("the query string is not valid percent-encoded UTF-8".into());
        pairs.push((
            percent_decode(k, true).ok_or_else(bad)?.into_owned(),
            percent_decode(v, true).ok_or_else(bad)?.into_owned(),
        ));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_routes() {
        assert_eq!(route(&Method::GET, "/").unwrap(), Route::Root);
        assert_eq!(
            route(&Method::GET, "/admin/databases").unwrap(),
            Route::ListDatabases
        );
        assert_eq!(
            route(&Method::POST, "/admin/databases/spawn/agent-alpha-memory").unwrap(),
            Route::Spawn("agent-alpha-memory".into())
        );
        assert_eq!(
            route(&Method::POST, "/admin/databases/prune/x").unwrap(),
            Route::Prune("x".into())
        );
        assert_eq!(
            route(&Method::POST, "/api/db/x/query").unwrap(),
            Route::Query("x".into())
        );
        assert_eq!(
            route(&Method::GET, "/api/db/x/tables/my%20t/rows").unwrap(),
            Route::ReadRows("x".into(), "my t".into())
        );
        assert_eq!(
            route(&Method::POST, "/api/db/x/tables/t/rows").unwrap(),
            Route::InsertRows("x".into(), "t".into())
        );
        assert_eq!(
            route(&Method::DELETE, "/admin/databases/x").unwrap(),
            Route::Delete("x".into())
        );
    }

    #[test]
    fn unknown_paths_and_wrong_methods() {
        assert!(matches!(
            route(&Method::GET, "/nope"),
            Err(ApiError::RouteNotFound)
        ));
        assert!(matches!(
            route(&Method::GET, "/api/db/x"),
            Err(ApiError::RouteNotFound)
        ));
        assert!(matches!(
            route(&Method::GET, "/api/db/x/query"),
            Err(ApiError::MethodNotAllowed { allow: "POST" })
        ));
        assert!(matches!(
            route(&Method::PUT, "/admin/databases/x"),
            Err(ApiError::MethodNotAllowed {
                allow: "GET, HEAD, DELETE"
            })
        ));
        assert!(matches!(
            route(&Method::GET, "/api/db/x/tables/%ff/rows"),
            Err(ApiError::Validation(_))
        ));
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%20b+c", true).unwrap(), "a b c");
        assert_eq!(percent_decode("a+b", false).unwrap(), "a+b");
        assert_eq!(percent_decode("%E2%9C%93", false).unwrap(), "✓");
        assert!(percent_decode("%zz", false).is_none());
        assert!(percent_decode("%4", false).is_none());
        assert_eq!(
            query_pairs("name=Alice&city=New+York&x").unwrap(),
            vec![
                ("name".into(), "Alice".into()),
                ("city".into(), "New York".into()),
                ("x".into(), "".into())
            ]
        );
    }
}
