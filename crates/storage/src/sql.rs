//! Small helpers shared by the repositories: times, arguments for dynamic queries.

use cardwright_domain::Timestamp;
use chrono::{DateTime, Utc};
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

use crate::StoreError;

/// A timestamp as stored: microseconds since the Unix epoch.
pub fn to_micros(t: Timestamp) -> i64 {
    t.timestamp_micros()
}

/// A stored timestamp back.
pub fn from_micros(micros: i64) -> Result<Timestamp, StoreError> {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {micros} out of range")))
}

pub(crate) fn opt_from_micros(micros: Option<i64>) -> Result<Option<Timestamp>, StoreError> {
    micros.map(from_micros).transpose()
}

/// A value bound to a dynamically built query.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
    /// Text or NULL.
    OptText(Option<String>),
}

/// Builds a query whose `WHERE` clause depends on the filters given.
#[derive(Debug, Default)]
pub(crate) struct QueryBuilder {
    pub sql: String,
    args: Vec<Arg>,
}

impl QueryBuilder {
    pub fn new(sql: &str) -> Self {
        Self {
            sql: sql.to_owned(),
            args: Vec::new(),
        }
    }

    /// Appends a placeholder for `arg` and returns it (`$1`, `$2`, ...).
    pub fn arg(&mut self, arg: Arg) -> String {
        self.args.push(arg);
        format!("${}", self.args.len())
    }

    pub fn push(&mut self, sql: &str) {
        self.sql.push_str(sql);
    }

    pub fn query(&self) -> Query<'_, Any, AnyArguments<'_>> {
        let mut query = sqlx::query(&self.sql);
        for arg in &self.args {
            query = match arg {
                Arg::Text(s) => query.bind(s.as_str()),
                Arg::Int(n) => query.bind(*n),
                Arg::OptText(s) => query.bind(s.clone()),
            };
        }
        query
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern.
pub(crate) fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
