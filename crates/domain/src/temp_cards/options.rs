//! The options of the temporary card processes and their allowed values.

use crate::error::DomainError;
use crate::Timestamp;

/// Options that assign and extend read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TempCardOptions {
    /// Days an assignment or an extension is valid for (1..=365).
    pub validity_days: u32,
    /// How many assigned temporary cards one person may hold at once (1..=10).
    pub max_active_per_person: u32,
}

impl Default for TempCardOptions {
    fn default() -> Self {
        Self {
            validity_days: 14,
            max_active_per_person: 1,
        }
    }
}

impl TempCardOptions {
    /// When an assignment made at `now` ends.
    pub fn valid_until_from(&self, start: Timestamp) -> Timestamp {
        start + chrono::Duration::days(i64::from(self.validity_days))
    }

    /// Refuses an assignment when the person already holds the most cards allowed.
    pub fn check_holder_limit(&self, assigned_now: u64) -> Result<(), DomainError> {
        if assigned_now >= u64::from(self.max_active_per_person) {
            Err(DomainError::Conflict(format!(
                "the person already holds {assigned_now} assigned temporary card(s); at most {} allowed",
                self.max_active_per_person
            )))
        } else {
            Ok(())
        }
    }
}
