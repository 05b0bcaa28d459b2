/// What went wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database configuration: {0}")]
    Config(String),
    /// A stored value does not parse back into its domain type.
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    /// The key store could not compute a signature.
    #[error("key store: {0}")]
    Key(String),
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: i64,
        name: &'static str,
        source: sqlx::Error,
    },
}

impl StoreError {
    /// True when a unique constraint refused the write.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => e.is_unique_violation(),
            _ => false,
        }
    }
}

impl From<cardwright_domain::DomainError> for StoreError {
    fn from(e: cardwright_domain::DomainError) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}
