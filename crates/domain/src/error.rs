/// A rule of the domain that a request broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A value from outside did not parse.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// Free text that breaks its field's rule ([`crate::text`]).
    #[error("{field} {problem}")]
    Text {
        field: &'static str,
        problem: crate::text::TextProblem,
    },
    /// The process is not allowed in the card's current state.
    #[error("{process} is not allowed on a card in state {state}; it needs state {allowed}")]
    WrongState {
        /// The process's symbolic name.
        process: &'static str,
        /// The card's state.
        state: &'static str,
        allowed: String,
    },
    /// A rule about other records forbids the step (for example the per-person card limit).
    #[error("{0}")]
    Conflict(String),
}

impl DomainError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }
}
