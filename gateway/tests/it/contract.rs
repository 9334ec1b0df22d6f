//! The seed's API contract, word for word (`shared/api-contract.md`).

use serde_json::json;

use crate::common::{docker_lines, Gateway, Namespace};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_contract_end_to_end() {
    let ns = Namespace::new();
    let gw = Gateway::start(&ns, &[]).await;

    let root = gw.get("/").await;
    assert_eq!(root.status, 200);
    assert_eq!(
        root.body,
        json!({"message": "Praetorian DB-Forge is online."})
    );

    // Spawn: 201 new, 200 existing with the same container.
    let db = "test_db_spawn_01";
    let first = gw.spawn(db).await;
    assert_eq!(
        first.body["message"],
        "Database instance spawned successfully."
    );
    assert_eq!(first.body["db_name"], db);
    let container_id = first.body["container_id"].as_str().unwrap().to_owned();
    assert!(!container_id.is_empty());
    let again = gw
        .request("POST", &format!("/admin/databases/spawn/{db}"), None)
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(
        again.body["message"],
        "Database instance already exists and is running."
    );
    assert_eq!(again.body["container_id"], container_id.as_str());

    // The container is what Docker says, hardened as promised.
    let inspect = docker_lines(&[
        "inspect",
        "--format",
        "{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.NetworkMode}} {{.HostConfig.CapDrop}} {{.Config.User}} {{.HostConfig.SecurityOpt}}",
        &container_id,
    ]);
    assert_eq!(
        inspect,
        vec!["true none [ALL] 65534:65534 [no-new-privileges]".to_string()]
    );

    // List: an array of running instances.
    let list = gw.get("/admin/databases").await;
    assert_eq!(list.status, 200);
    let entries = list.body.as_array().expect("an array");
    assert!(
        entries.contains(&json!({"name": db, "container_id": container_id, "status": "running"}))
    );

    // Tables: 201, and again is not an error.
    let table = json!({"table_name": "users", "columns": [
        {"name": "id", "type": "INTEGER", "primary_key": true},
        {"name": "name", "type": "TEXT", "not_null": true},
        {"name": "status", "type": "TEXT", "default": "pending"},
        {"name": "balance", "type": "REAL"}]});
    let created = gw
        .post(&format!("/api/db/{db}/tables"), table.clone())
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.body,
        json!({"message": "Table 'users' created successfully."})
    );
    let created = gw.post(&format!("/api/db/{db}/tables"), table).await;
    assert_eq!(created.status, 201, "{}", created.body);

    // Rows: insert Alice then Bob; read back in insertion order.
    let inserted = gw
        .post(
            &format!("/api/db/{db}/tables/users/rows"),
            json!({"rows": [{"name": "Alice", "balance": 1100.0}, {"name": "Bob", "status": "active", "balance": null}]}),
        )
        .await;
    assert_eq!(inserted.status, 201, "{}", inserted.body);
    assert_eq!(
        inserted.body,
        json!({"message": "Rows inserted successfully.", "rows_affected": 2})
    );
    let empty = gw
        .post(
            &format!("/api/db/{db}/tables/users/rows"),
            json!({"rows": []}),
        )
        .await;
    assert_eq!(empty.status, 400, "{}", empty.body);

    let all = gw.get(&format!("/api/db/{db}/tables/users/rows")).await;
    assert_eq!(all.status, 200);
    assert_eq!(all.body["rows_affected"], 2);
    assert_eq!(
        all.body["data"][0],
        json!({"id": 1, "name": "Alice", "status": "pending", "balance": 1100.0})
    );
    assert_eq!(all.body["data"][1]["balance"], serde_json::Value::Null);
    let filtered = gw
        .get(&format!(
            "/api/db/{db}/tables/users/rows?status=active&name=Bob"
        ))
        .await;
    assert_eq!(filtered.body["rows_affected"], 1, "{}", filtered.body);
    assert_eq!(filtered.body["data"][0]["name"], "Bob");
    let by_id = gw
        .get(&format!("/api/db/{db}/tables/users/rows?id=1"))
        .await;
    assert_eq!(by_id.body["data"][0]["name"], "Alice", "{}", by_id.body);

    // Query: rows, then a statement with changes, then a SQL error.
    let q = gw
        .query(
            db,
            "SELECT name, balance FROM users WHERE id = ?",
            json!([1]),
        )
        .await;
    assert_eq!(q.status, 200);
    assert_eq!(
        q.body["data"],
        json!([{"name": "Alice", "balance": 1100.0}])
    );
    assert_eq!(q.body["rows_affected"], 1);
    let u = gw
        .query(db, "UPDATE users SET status = :s", json!({"s": "done"}))
        .await;
    assert_eq!(u.status, 200, "{}", u.body);
    assert_eq!(u.body["message"], "Query executed successfully.");
    assert_eq!(u.body["rows_affected"], 2);
    let bad = gw.query(db, "SELECT * FROM nope", json!(null)).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["detail"], "SQL Error: no such table: nope");
    assert_eq!(bad.code(), "SQL_ERROR");

    // Unknown database: the contract's 404 on every data-plane route.
    for (method, path) in [
        ("POST", "/api/db/no_such_db/query"),
        ("POST", "/api/db/no_such_db/tables"),
        ("GET", "/api/db/no_such_db/tables/t/rows"),
        ("POST", "/api/db/no_such_db/tables/t/rows"),
    ] {
        let body = match method {
            "POST" if path.ends_with("query") => Some(json!({"sql": "SELECT 1"})),
            "POST" if path.ends_with("tables") => {
                Some(json!({"table_name": "t", "columns": [{"name": "a", "type": "TEXT"}]}))
            }
            "POST" => Some(json!({"rows": [{"a": 1}]})),
            _ => None,
        };
        let a = gw.request(method, path, body).await;
        assert_eq!(a.status, 404, "{method} {path}: {}", a.body);
        assert_eq!(a.body["detail"], "Database not found.");
        assert_eq!(a.code(), "DATABASE_NOT_FOUND");
    }

    // Prune keeps the data; the pruned database is not listed; a query
    // wakes it on demand.
    let pruned = gw
        .request("POST", &format!("/admin/databases/prune/{db}"), None)
        .await;
    assert_eq!(pruned.status, 200, "{}", pruned.body);
    assert_eq!(
        pruned.body,
        json!({"message": "Database instance pruned successfully.", "db_name": db})
    );
    assert!(ns.containers().is_empty(), "prune removes the container");
    assert_eq!(ns.volumes().len(), 1, "prune keeps the volume");
    let list = gw.get("/admin/databases").await;
    assert!(!list
        .body
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == db));
    let again = gw
        .request("POST", &format!("/admin/databases/prune/{db}"), None)
        .await;
    assert_eq!(again.status, 404);
    let woke = gw
        .query(db, "SELECT count(*) AS n FROM users", json!([]))
        .await;
    assert_eq!(woke.status, 200, "{}", woke.body);
    assert_eq!(woke.body["data"], json!([{"n": 2}]));

    // Spawning a pruned database makes a new instance over the old data.
    let pruned = gw
        .request("POST", &format!("/admin/databases/prune/{db}"), None)
        .await;
    assert_eq!(pruned.status, 200, "{}", pruned.body);
    let respawn = gw
        .request("POST", &format!("/admin/databases/spawn/{db}"), None)
        .await;
    assert_eq!(respawn.status, 201, "{}", respawn.body);
    let kept = gw
        .query(db, "SELECT count(*) AS n FROM users", json!([]))
        .await;
    assert_eq!(kept.body["data"], json!([{"n": 2}]));
    gw.spawn("agent-alpha-memory").await;

    // Invalid names: a 400 that states the rule.
    let invalid = gw
        .request("POST", "/admin/databases/spawn/-bad", None)
        .await;
    assert_eq!(invalid.status, 400);
    assert!(invalid.body["detail"]
        .as_str()
        .unwrap()
        .contains("[a-zA-Z0-9_.-]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_keep_their_types() {
    let ns = Namespace::new();
    let gw = Gateway::start(&ns, &[]).await;
    gw.spawn("types").await;
    let q = gw
        .query(
            "types",
            "SELECT ? AS big, ? AS small, ? AS real, ? AS neg_zero, ? AS text, ? AS empty, ? AS nul, ? AS blob, 2 AS two, 1e0 AS one_real, x'00ff' AS raw",
            json!([i64::MAX, i64::MIN, 0.1, -0.0, "żółć 🦀", "", null, {"$blob": "AAEC/w=="}]),
        )
        .await;
    assert_eq!(q.status, 200, "{}", q.body);
    let row = &q.body["data"][0];
    assert_eq!(row["big"].as_i64(), Some(i64::MAX));
    assert_eq!(row["small"].as_i64(), Some(i64::MIN));
    assert_eq!(row["real"].as_f64(), Some(0.1));
    assert!(row["neg_zero"].as_f64().unwrap().is_sign_negative());
    assert_eq!(row["text"], "żółć 🦀");
    assert_eq!(row["empty"], "");
    assert!(row["nul"].is_null());
    assert_eq!(row["blob"], json!({"$blob": "AAEC/w=="}));
    assert!(row["two"].is_i64());
    assert!(row["one_real"].is_f64());
    assert_eq!(row["raw"], json!({"$blob": "AP8="}));
    assert_eq!(
        q.body["columns"],
        json!([
            "big", "small", "real", "neg_zero", "text", "empty", "nul", "blob", "two", "one_real",
            "raw"
        ])
    );

    // Row-returning statements are recognised by SQLite, not by their text.
    gw.query(
        "types",
        "create table t(a integer primary key, b)",
        json!([]),
    )
    .await;
    for sql in [
        "with x(v) as (select 1) select v from x",
        "pragma table_info(t)",
        "insert into t(b) values ('x') returning a, b",
        "select 1",
    ] {
        let a = gw.query("types", sql, json!([])).await;
        assert_eq!(a.status, 200, "{sql}: {}", a.body);
        assert!(a.body["data"].is_array(), "{sql}: {}", a.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_is_atomic_and_schema_describes() {
    let ns = Namespace::new();
    let gw = Gateway::start(&ns, &[]).await;
    gw.spawn("b").await;
    let ok = gw
        .post(
            "/api/db/b/batch",
            json!({"statements": [
                {"sql": "CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)"},
                {"sql": "INSERT INTO kv VALUES (?, ?)", "params": ["a", 1]},
                {"sql": "SELECT v FROM kv WHERE k = :k", "params": {"k": "a"}}
            ]}),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["results"][1]["rows_affected"], 1);
    assert_eq!(ok.body["results"][2]["data"], json!([{"v": 1}]));

    let failed = gw
        .post(
            "/api/db/b/batch",
            json!({"statements": [
                {"sql": "INSERT INTO kv VALUES ('b', 2)"},
                {"sql": "INSERT INTO kv VALUES ('a', 3)"}
            ]}),
        )
        .await;
    assert_eq!(failed.status, 400, "{}", failed.body);
    assert_eq!(failed.code(), "CONSTRAINT");
    let count = gw
        .query("b", "SELECT count(*) AS n FROM kv", json!([]))
        .await;
    assert_eq!(
        count.body["data"],
        json!([{"n": 1}]),
        "nothing of the failed batch stays"
    );

    let schema = gw.get("/api/db/b/schema").await;
    assert_eq!(schema.status, 200, "{}", schema.body);
    let kv = &schema.body["tables"][0];
    assert_eq!(kv["name"], "kv");
    assert_eq!(kv["row_count"], 1);
    assert_eq!(kv["columns"][1]["not_null"], true);

    let details = gw.get("/admin/databases/b").await;
    assert_eq!(details.status, 200, "{}", details.body);
    assert_eq!(details.body["status"], "running");
    assert!(details.body["size_bytes"].as_u64().unwrap() > 0);
    assert_eq!(details.body["settings"]["synchronous"], "full");
}
