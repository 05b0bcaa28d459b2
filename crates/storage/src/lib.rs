//! Cardwright's storage adapter.
//!
//! One schema and one migration history serve SQLite (the embedded default) and PostgreSQL. Every
//! write happens inside a transaction the caller opens with [`Store::begin`] and passes down, so a
//! process's state change and its audit event commit together or not at all.

pub mod audit;
pub mod batch_orders;
pub mod cards;
pub mod certificates;
mod error;
pub mod keys;
pub mod mails;
mod migrations;
pub mod operators;
pub mod outbox;
pub mod persons;
pub mod photos;
pub mod rate_limits;
pub mod scripts;
mod sql;
pub mod stations;
pub mod templates;
pub mod webhooks;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

pub use error::StoreError;
pub use sql::{from_micros, to_micros};

/// A connection inside a transaction, passed to every storage function.
pub type Conn = sqlx::AnyConnection;
/// An open transaction.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// Which database a store talks to. The SQL is shared; only locking differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The suffix that locks selected rows until the transaction ends. SQLite needs none: a
    /// write transaction there holds the whole database.
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// The suffix that keeps selected rows from changing until the transaction ends while
    /// letting other transactions hold the same lock (none on SQLite, as above).
    pub fn for_share(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR SHARE",
        }
    }
}

/// The database behind Cardwright.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
}

impl Store {
    /// Connects to `sqlite://PATH` or `postgres://...`. A SQLite file is created when missing.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::open(url, false).await
    }

    /// Connects for reading only: a SQLite file is opened read-only (never created, its journal
    /// mode left as it is) and a PostgreSQL session refuses writes, so a check such as
    /// `audit verify` cannot change what it checks. No migration runs.
    pub async fn connect_read_only(url: &str) -> Result<Self, StoreError> {
        Self::open(url, true).await
    }

    async fn open(url: &str, read_only: bool) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Dialect::Postgres
        } else {
            return Err(StoreError::Config(format!(
                "unsupported database URL '{}': use sqlite://PATH or postgres://...",
                redact_url(url)
            )));
        };
        let url = if read_only && dialect == Dialect::Sqlite {
            read_only_sqlite_url(url)
        } else {
            url.to_owned()
        };
        let mut options = AnyConnectOptions::from_str(&url)
            .map_err(|e| StoreError::Config(format!("bad database URL: {e}")))?;
        options = options.disable_statement_logging();
        let pool = match dialect {
            // SQLite takes one writer at a time; one connection per process keeps every
            // transaction free of lock upgrades, and WAL lets other processes read meanwhile.
            Dialect::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(move |conn, _| {
                        Box::pin(async move {
                            if read_only {
                                conn.execute("PRAGMA busy_timeout = 10000").await?;
                                conn.execute("PRAGMA query_only = ON").await?;
                                return Ok(());
                            }
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
            Dialect::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(move |conn, _| {
                        Box::pin(async move {
                            if read_only {
                                conn.execute("SET default_transaction_read_only = on")
                                    .await?;
                            }
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
        };
        Ok(Self { pool, dialect })
    }

    /// The SQLite URL for a database file, creating it when missing.
    pub fn sqlite_url(path: &std::path::Path) -> String {
        format!("sqlite://{}?mode=rwc", path.display())
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Applies every migration not yet applied. Safe when several servers start at once: they
    /// take turns on a database lock and the later ones find nothing left to do.
    pub async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        migrations::run(&self.pool, self.dialect).await
    }

    /// Opens a transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`): a
    /// transaction that read first and wrote later could not wait for another process's write
    /// and would fail with "database is locked"; one that begins with the lock waits its turn
    /// (up to the busy timeout).
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.pool.begin().await?,
        })
    }

    /// Commits a transaction opened with [`Store::begin`].
    pub async fn commit(tx: Tx) -> Result<(), StoreError> {
        Ok(tx.commit().await?)
    }

    /// A connection for reads that need no transaction.
    pub async fn reader(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, StoreError> {
        Ok(self.pool.acquire().await?)
    }

    /// Runs one statement outside any transaction (administration: schemas, statistics).
    pub async fn execute_raw(&self, sql: &str) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        conn.execute(sql).await?;
        Ok(())
    }

    /// Refreshes the query planner's statistics.
    pub async fn analyze(&self) -> Result<(), StoreError> {
        self.execute_raw("ANALYZE").await
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        conn.execute("SELECT 1").await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The same SQLite URL opening the file read-only (`mode=ro` in place of any other mode). When
/// no write-ahead log lies beside the file, no server has it open, and the file is opened as
/// immutable: SQLite then creates no `-wal` or `-shm` file beside it either.
fn read_only_sqlite_url(url: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("mode=") && !p.starts_with("immutable="))
        .collect();
    params.push("mode=ro");
    let path = base
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    if !std::path::Path::new(&format!("{path}-wal")).exists() {
        params.push("immutable=true");
    }
    format!("{base}?{}", params.join("&"))
}

/// The URL without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn read_only_sqlite_urls_replace_the_mode() {
        assert_eq!(
            super::read_only_sqlite_url("sqlite://no/such/cw.db?mode=rwc"),
            "sqlite://no/such/cw.db?mode=ro&immutable=true"
        );
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cw.db");
        std::fs::write(dir.path().join("cw.db-wal"), b"").unwrap();
        assert_eq!(
            super::read_only_sqlite_url(&format!("sqlite://{}", db.display())),
            format!("sqlite://{}?mode=ro", db.display())
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact_url("postgres://cw:secret@db:5432/cw"),
            "postgres://cw:***@db:5432/cw"
        );
        assert_eq!(
            super::redact_url("sqlite://data/cw.db"),
            "sqlite://data/cw.db"
        );
    }
}
