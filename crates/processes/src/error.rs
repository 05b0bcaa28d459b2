use cardwright_domain::text::TextProblem;
use cardwright_domain::DomainError;
use cardwright_storage::StoreError;

/// Why a process did not happen. Nothing was changed when one of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The request's input is not valid.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// No valid login.
    #[error("{0}")]
    Unauthenticated(String),
    /// Logged in, but without the role the step needs.
    #[error("{0}")]
    Forbidden(String),
    /// The record's state or another record forbids the step.
    #[error("{0}")]
    Conflict(String),
    /// Well-formed, but refused by a rule about its content (a card layout, an option script).
    #[error("{0}")]
    Unprocessable(String),
    /// An option script was refused (422), with its position where known.
    #[error("{0}")]
    Script(cardwright_scripts::ScriptError),
    /// Too many failed logins.
    #[error("{0}")]
    Throttled(String),
    /// The operator has as many renders under way as one may have at once; they may try again
    /// after `retry_after` (429).
    #[error("{message}")]
    Limited {
        message: String,
        retry_after: std::time::Duration,
    },
    /// The server has no room for the work now; it may be asked again after `retry_after`
    /// (503).
    #[error("{message}")]
    Busy {
        message: String,
        retry_after: std::time::Duration,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A device (a chip encoder) refused the step; nothing was recorded.
    #[error("{message}")]
    Device {
        message: String,
        #[source]
        source: cardwright_cardsdk::encoder::EncodeError,
    },
    #[error("internal error: {0}")]
    Internal(String),
    /// Something the process relies on failed, with the cause.
    #[error("internal error: {what}")]
    Failed {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ProcessError {
    /// An internal failure of `what`, keeping its cause.
    pub fn failed(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Failed {
            what: what.into(),
            source: source.into(),
        }
    }
}

impl From<DomainError> for ProcessError {
    fn from(e: DomainError) -> Self {
        match e {
            // A text of the wrong length is refused like any value that breaks its rule; one
            // with characters the rules of free text forbid is refused for what it says (422),
            // as a comment's always was.
            DomainError::Invalid { .. }
            | DomainError::Text {
                problem: TextProblem::Empty | TextProblem::TooLong { .. },
                ..
            } => ProcessError::Invalid(e.to_string()),
            DomainError::Text {
                problem: TextProblem::Control { .. } | TextProblem::InvisibleFormatting,
                ..
            } => ProcessError::Unprocessable(e.to_string()),
            DomainError::WrongState { .. } | DomainError::Conflict(_) => {
                ProcessError::Conflict(e.to_string())
            }
        }
    }
}

impl From<crate::keys::KeyError> for ProcessError {
    fn from(e: crate::keys::KeyError) -> Self {
        match e {
            crate::keys::KeyError::Store(e) => ProcessError::Store(e),
            other => ProcessError::failed("the key store", other),
        }
    }
}
