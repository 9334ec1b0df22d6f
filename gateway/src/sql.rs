//! SQL built by the convenience endpoints (tables and rows). Every table and
//! column name is quoted as an identifier and every value is bound as a
//! parameter, so a name with quotes, spaces or SQL in it stays a name.

use std::collections::BTreeMap;

use dbforge_protocol::{Params, Statement, Value};
use serde::Deserialize;

/// Quotes `name` as an SQLite identifier: `"` around, inner `"` doubled.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Checks a table or column name: any text but empty or holding NUL (which
/// SQLite cannot keep in a name).
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err(format!("{what} must not be empty"))
    } else if name.contains('\0') {
        Err(format!("{what} must not contain NUL"))
    } else {
        Ok(())
    }
}

/// `POST /api/db/{db}/tables` body.
#[derive(Debug, Deserialize)]
pub struct CreateTable {
    /// The table's name.
    pub table_name: String,
    /// Its columns, in order.
    pub columns: Vec<ColumnDef>,
}

/// One column of [`CreateTable`].
#[derive(Debug, Deserialize)]
pub struct ColumnDef {
    /// The column's name.
    pub name: String,
    /// Its declared type, e.g. `INTEGER`, `TEXT`, `VARCHAR(20)`.
    #[serde(rename = "type")]
    pub ty: String,
    /// Part of the primary key.
    #[serde(default)]
    pub primary_key: bool,
    /// `NOT NULL`.
    #[serde(default)]
    pub not_null: bool,
    /// `UNIQUE`.
    #[serde(default)]
    pub unique: bool,
    /// `DEFAULT`: a JSON string, number, boolean or null.
    #[serde(default)]
    pub default: Option<serde_json::Value>,
}

/// Whether `ty` is a type name as SQLite's grammar has it: words, optionally
/// followed by `(n)` or `(n, m)` with signed numbers.
fn valid_type(ty: &str) -> bool {
    let (words, args) = match ty.find('(') {
        Some(i) => (&ty[..i], Some(&ty[i..])),
        None => (ty, None),
    };
    let words_ok = words.split_whitespace().count() > 0
        && words.split_whitespace().all(|w| {
            w.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    let args_ok = match args {
        None => true,
        Some(a) => {
            let Some(inner) = a
                .trim_end()
                .strip_prefix('(')
                .and_then(|a| a.strip_suffix(')'))
            else {
                return false;
            };
            let nums: Vec<&str> = inner.split(',').map(str::trim).collect();
            nums.len() <= 2
                && nums.iter().all(|n| {
                    let n = n.strip_prefix(['+', '-']).unwrap_or(n);
                    !n.is_empty() && n.chars().all(|c| c.is_ascii_digit() || c == '.')
                })
        }
    };
    words_ok && args_ok
}

/// Renders a JSON default as an SQL literal.
fn literal(v: &serde_json::Value) -> Result<String, String> {
    match v {
        serde_json::Value::Null => Ok("NULL".into()),
        serde_json::Value::Bool(b) => Ok(if *b { "1" } else { "0" }.into()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::String(s) => Ok(format!("'{}'", s.replace('\'', "''"))),
        _ => Err("a default must be a string, number, boolean or null".into()),
    }
}

impl CreateTable {
    /// `CREATE TABLE IF NOT EXISTS ...`, or what is wrong with the request.
    pub fn to_sql(&self) -> Result<String, String> {
        check_name("table_name", &self.table_name)?;
        if self.columns.is_empty() {
            return Err("columns must name at least one column".into());
        }
        let pk: Vec<&ColumnDef> = self.columns.iter().filter(|c| c.primary_key).collect();
        let mut defs = Vec::with_capacity(self.columns.len() + 1);
        for c in &self.columns {
            check_name("a column name", &c.name)?;
            if !valid_type(&c.ty) {
                return Err(format!(
                    "column {:?}: type {:?} is not a type name (words, optionally with (n) or (n, m))",
                    c.name, c.ty
                ));
            }
            let mut def = format!("{} {}", quote_ident(&c.name), c.ty);
            if c.primary_key && pk.len() == 1 {
                def.push_str(" PRIMARY KEY");
            }
            if c.not_null {
                def.push_str(" NOT NULL");
            }
            if c.unique {
                def.push_str(" UNIQUE");
            }
            if let Some(d) = &c.default {
                def.push_str(" DEFAULT ");
                def.push_str(&literal(d).map_err(|e| format!("column {:?}: {e}", c.name))?);
            }
            defs.push(def);
        }
        if pk.len() > 1 {
            let cols: Vec<String> = pk.iter().map(|c| quote_ident(&c.name)).collect();
            defs.push(format!("PRIMARY KEY ({})", cols.join(", ")));
        }
        Ok(format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            quote_ident(&self.table_name),
            defs.join(", ")
        ))
    }
}

/// `SELECT * FROM t WHERE a = ? AND b = ?` for equality filters.
pub fn select_rows(table: &str, filters: &[(String, String)]) -> Result<Statement, String> {
    check_name("the table name", table)?;
    let mut sql = format!("SELECT * FROM {}", quote_ident(table));
    let mut params = Vec::with_capacity(filters.len());
    for (i, (col, value)) in filters.iter().enumerate() {
        check_name("a filter's column name", col)?;
        sql.push_str(if i == 0 { " WHERE " } else { " AND " });
        sql.push_str(&quote_ident(col));
        sql.push_str(" = ?");
        params.push(Value::Text(value.clone()));
    }
    Ok(Statement {
        sql,
        params: Params::Positional(params),
    })
}

/// Why rows cannot be inserted.
#[derive(Debug, PartialEq, Eq)]
pub enum InsertError {
    /// The request is wrong (no rows, a bad name).
    Invalid(String),
    /// The statements would be larger than `budget` bytes: the SQL text of
    /// an INSERT is repeated for every row, so a body of many tiny rows with
    /// long names grows several times over.
    TooLarge {
        /// The budget that was exceeded.
        budget: usize,
    },
}

/// One `INSERT` per row (rows may name different columns), at most `budget`
/// bytes of SQL text in all.
pub fn insert_rows(
    table: &str,
    rows: &[BTreeMap<String, Value>],
    budget: usize,
) -> Result<Vec<Statement>, InsertError> {
    check_name("the table name", table).map_err(InsertError::Invalid)?;
    if rows.is_empty() {
        return Err(InsertError::Invalid(
            "rows must hold at least one row".into(),
        ));
    }
    let table = quote_ident(table);
    let mut size = 0usize;
    for row in rows {
        size += 40 + table.len() + row.keys().map(|k| k.len() + 6).sum::<usize>();
        if size > budget {
            return Err(InsertError::TooLarge { budget });
        }
    }
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            if row.is_empty() {
                return Ok(Statement::new(format!(
                    "INSERT INTO {table} DEFAULT VALUES"
                )));
            }
            let mut cols = Vec::with_capacity(row.len());
            for name in row.keys() {
                check_name(&format!("row {i}: a column name"), name)
                    .map_err(InsertError::Invalid)?;
                cols.push(quote_ident(name));
            }
            let marks = vec!["?"; row.len()].join(", ");
            Ok(Statement {
                sql: format!("INSERT INTO {table} ({}) VALUES ({marks})", cols.join(", ")),
                params: Params::Positional(row.values().cloned().collect()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("t"), "\"t\"");
        assert_eq!(
            quote_ident("a\"; DROP TABLE x; --"),
            "\"a\"\"; DROP TABLE x; --\""
        );
    }

    #[test]
    fn seed_create_table() {
        let t: CreateTable = serde_json::from_str(
            r#"{"table_name": "t", "columns": [
                {"name": "id", "type": "INTEGER", "primary_key": true},
                {"name": "name", "type": "TEXT", "not_null": true},
                {"name": "status", "type": "TEXT", "default": "pending"}]}"#,
        )
        .unwrap();
        assert_eq!(
            t.to_sql().unwrap(),
            r#"CREATE TABLE IF NOT EXISTS "t" ("id" INTEGER PRIMARY KEY, "name" TEXT NOT NULL, "status" TEXT DEFAULT 'pending')"#
        );
    }

    #[test]
    fn composite_keys_and_literals() {
        let t: CreateTable = serde_json::from_str(
            r#"{"table_name": "k", "columns": [
                {"name": "a", "type": "INT", "primary_key": true},
                {"name": "b", "type": "VARCHAR(20)", "primary_key": true, "default": "it's"},
                {"name": "c", "type": "DECIMAL(10, 2)", "default": 1.5, "unique": true}]}"#,
        )
        .unwrap();
        assert_eq!(
            t.to_sql().unwrap(),
            r#"CREATE TABLE IF NOT EXISTS "k" ("a" INT, "b" VARCHAR(20) DEFAULT 'it''s', "c" DECIMAL(10, 2) UNIQUE DEFAULT 1.5, PRIMARY KEY ("a", "b"))"#
        );
    }

    #[test]
    fn types_cannot_smuggle_sql() {
        for ty in [
            "TEXT); DROP TABLE t; --",
            "",
            "1INT",
            "TEXT(1,2,3)",
            "INT(",
            "TEXT DEFAULT 'x'",
            "a'b",
        ] {
            let t = CreateTable {
                table_name: "t".into(),
                columns: vec![ColumnDef {
                    name: "c".into(),
                    ty: ty.into(),
                    primary_key: false,
                    not_null: false,
                    unique: false,
                    default: None,
                }],
            };
            assert!(t.to_sql().is_err(), "{ty}");
        }
        for ty in [
            "INTEGER",
            "UNSIGNED BIG INT",
            "NVARCHAR(100)",
            "DOUBLE PRECISION",
            "DECIMAL(-1,+2)",
        ] {
            assert!(valid_type(ty), "{ty}");
        }
    }

    #[test]
    fn rows_and_filters_bind_values() {
        let s = select_rows("my t", &[("na\"me".into(), "Alice".into())]).unwrap();
        assert_eq!(s.sql, r#"SELECT * FROM "my t" WHERE "na""me" = ?"#);
        assert_eq!(
            s.params,
            Params::Positional(vec![Value::Text("Alice".into())])
        );
        let row: BTreeMap<String, Value> =
            serde_json::from_str(r#"{"name": "x'); DROP", "age": 3}"#).unwrap();
        let ins = insert_rows("t", &[row.clone(), BTreeMap::new()], 1 << 20).unwrap();
        assert_eq!(
            ins[0].sql,
            r#"INSERT INTO "t" ("age", "name") VALUES (?, ?)"#
        );
        assert_eq!(ins[1].sql, r#"INSERT INTO "t" DEFAULT VALUES"#);
        assert!(matches!(
            insert_rows("t", &[], 1 << 20),
            Err(InsertError::Invalid(_))
        ));
        let many = vec![row; 1000];
        assert_eq!(
            insert_rows(&"x".repeat(500), &many, 100_000),
            Err(InsertError::TooLarge { budget: 100_000 })
        );
        assert!(select_rows("", &[]).is_err());
    }
}
