//! Option scripts and their versions.

use cardwright_domain::Timestamp;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{from_micros, to_micros, Conn, StoreError};

/// One saved version of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptVersion {
    pub name: String,
    pub version: i64,
    pub source: String,
    pub saved_at: Timestamp,
    pub saved_by: String,
}

fn version(row: &AnyRow) -> Result<ScriptVersion, StoreError> {
    Ok(ScriptVersion {
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        source: row.try_get("source")?,
        saved_at: from_micros(row.try_get("saved_at")?)?,
        saved_by: row.try_get("saved_by")?,
    })
}

/// Saves `source` as the next version of `name` and returns that version. Two saves at once:
/// one of them meets the primary key and fails with a unique violation.
pub async fn save(
    conn: &mut Conn,
    name: &str,
    source: &str,
    saved_at: Timestamp,
    saved_by: &str,
) -> Result<i64, StoreError> {
    let next: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) + 1 FROM scripts WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *conn)
            .await?;
    sqlx::query(
        "INSERT INTO scripts (name, version, source, saved_at, saved_by) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(name)
    .bind(next)
    .bind(source)
    .bind(to_micros(saved_at))
    .bind(saved_by)
    .execute(conn)
    .await?;
    Ok(next)
}

/// The version in force (the newest), if the script was ever saved.
pub async fn current(conn: &mut Conn, name: &str) -> Result<Option<ScriptVersion>, StoreError> {
    let row = sqlx::query(
        "SELECT name, version, source, saved_at, saved_by FROM scripts WHERE name = $1 \
         ORDER BY version DESC LIMIT 1",
    )
    .bind(name)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(version).transpose()
}

/// Only the number of the version in force: what a cache checks before every run.
pub async fn current_version(conn: &mut Conn, name: &str) -> Result<Option<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT MAX(version) FROM scripts WHERE name = $1")
            .bind(name)
            .fetch_one(conn)
            .await?,
    )
}

pub async fn get(
    conn: &mut Conn,
    name: &str,
    number: i64,
) -> Result<Option<ScriptVersion>, StoreError> {
    let row = sqlx::query(
        "SELECT name, version, source, saved_at, saved_by FROM scripts WHERE name = $1 AND version = $2",
    )
    .bind(name)
    .bind(number)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(version).transpose()
}

/// Every version, newest first.
pub async fn versions(conn: &mut Conn, name: &str) -> Result<Vec<ScriptVersion>, StoreError> {
    let rows = sqlx::query(
        "SELECT name, version, source, saved_at, saved_by FROM scripts WHERE name = $1 ORDER BY version DESC",
    )
    .bind(name)
    .fetch_all(conn)
    .await?;
    rows.iter().map(version).collect()
}
