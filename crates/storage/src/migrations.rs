//! The one migration history, for SQLite and PostgreSQL alike.

use sqlx::{AnyPool, Executor};

use crate::{Dialect, StoreError};

struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "batch_orders",
        sql: include_str!("../migrations/0002_batch_orders.sql"),
    },
    Migration {
        version: 3,
        name: "template_layouts",
        sql: include_str!("../migrations/0003_template_layouts.sql"),
    },
    Migration {
        version: 4,
        name: "scripts",
        sql: include_str!("../migrations/0004_scripts.sql"),
    },
    Migration {
        version: 5,
        name: "certificates",
        sql: include_str!("../migrations/0005_certificates.sql"),
    },
    Migration {
        version: 6,
        name: "audit_signatures",
        sql: include_str!("../migrations/0006_audit_signatures.sql"),
    },
    Migration {
        version: 7,
        name: "crl_number",
        sql: include_str!("../migrations/0007_crl_number.sql"),
    },
    Migration {
        version: 8,
        name: "key_store",
        sql: include_str!("../migrations/0008_key_store.sql"),
    },
    Migration {
        version: 9,
        name: "notifications",
        sql: include_str!("../migrations/0009_notifications.sql"),
    },
    Migration {
        version: 10,
        name: "operator_accounts",
        sql: include_str!("../migrations/0010_operator_accounts.sql"),
    },
    Migration {
        version: 11,
        name: "photos_and_single_sign_on",
        sql: include_str!("../migrations/0011_photos_and_single_sign_on.sql"),
    },
    Migration {
        version: 12,
        name: "stations",
        sql: include_str!("../migrations/0012_stations.sql"),
    },
    Migration {
        version: 13,
        name: "station_renewal",
        sql: include_str!("../migrations/0013_station_renewal.sql"),
    },
    Migration {
        version: 14,
        name: "webhook_state_and_checkpoints",
        sql: include_str!("../migrations/0014_webhook_state_and_checkpoints.sql"),
    },
    Migration {
        version: 15,
        name: "login_checks",
        sql: include_str!("../migrations/0015_login_checks.sql"),
    },
    Migration {
        version: 16,
        name: "rate_limits",
        sql: include_str!("../migrations/0016_rate_limits.sql"),
    },
];

/// An arbitrary constant naming Cardwright's migration lock on PostgreSQL.
const PG_LOCK_KEY: i64 = 0x0C4D_5752_4947_4854;

/// Runs pending migrations under a database-wide lock; returns the names applied.
pub(crate) async fn run(pool: &AnyPool, dialect: Dialect) -> Result<Vec<String>, StoreError> {
    let mut conn = pool.acquire().await?;
    match dialect {
        Dialect::Postgres => {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(PG_LOCK_KEY)
                .execute(&mut *conn)
                .await?;
            conn.execute("BEGIN").await?;
        }
        // BEGIN IMMEDIATE takes SQLite's write lock at once; a second process waits its turn.
        Dialect::Sqlite => {
            conn.execute("BEGIN IMMEDIATE").await?;
        }
    }
    let applied = apply_pending(&mut conn).await;
    let end = if applied.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    let ended = conn.execute(end).await;
    if dialect == Dialect::Postgres {
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(PG_LOCK_KEY)
            .execute(&mut *conn)
            .await?;
    }
    let applied = applied?;
    ended?;
    Ok(applied)
}

async fn apply_pending(conn: &mut sqlx::AnyConnection) -> Result<Vec<String>, StoreError> {
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (\
         version BIGINT PRIMARY KEY, name TEXT NOT NULL)",
    )
    .await?;
    let done: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(&mut *conn)
        .await?;
    let mut applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| !done.contains(&m.version)) {
        for statement in statements(migration.sql) {
            conn.execute(statement.as_str())
                .await
                .map_err(|source| StoreError::Migration {
                    version: migration.version,
                    name: migration.name,
                    source,
                })?;
        }
        sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
            .bind(migration.version)
            .bind(migration.name)
            .execute(&mut *conn)
            .await?;
        applied.push(format!("{:04}_{}", migration.version, migration.name));
    }
    Ok(applied)
}

/// Splits a migration file into statements: comments dropped, split at `;` ending a line.
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let line = line.trim_end();
        if line.trim_start().starts_with("--") || line.trim().is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if line.ends_with(';') {
            out.push(current.trim().trim_end_matches(';').to_owned());
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn migration_files_split_into_statements() {
        let statements = super::statements(super::MIGRATIONS[0].sql);
        assert!(statements.len() > 10);
        assert!(statements
            .iter()
            .all(|s| !s.contains("--") && !s.ends_with(';')));
    }
}
