//! Cards of every area, their states and the values printed on them.

use std::fmt;
use std::str::FromStr;

use crate::error::DomainError;
use crate::ids::{BatchOrderId, CardId, PersonId, TemplateId};
use crate::Timestamp;

/// The state of a card: one of the names its area lists ([`crate::area::Area::states`]). A
/// value, not a list fixed here, so an area brings its own states; the areas' names are read back
/// from storage and requests through [`CardState::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CardState(&'static str);

impl CardState {
    /// A state called `name`, for an area's list of states.
    pub const fn new(name: &'static str) -> Self {
        Self(name)
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// Every state of every area, each once, in the areas' order.
    pub fn all() -> Vec<CardState> {
        let mut all: Vec<CardState> = Vec::new();
        for area in crate::area::AREAS {
            for state in area.states {
                if !all.contains(state) {
                    all.push(*state);
                }
            }
        }
        all
    }

    /// The state called `s` in any area.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let all = Self::all();
        all.iter()
            .copied()
            .find(|state| state.0 == s)
            .ok_or_else(|| {
                DomainError::invalid(
                    "state",
                    format!(
                        "'{s}' is not a card state; use one of {}",
                        all.iter()
                            .map(|state| state.0)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
    }
}

impl fmt::Display for CardState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl FromStr for CardState {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The unique number printed on a card: the template's serial prefix and a running number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(String);

impl Serial {
    /// The serial for the `number`th card of a template with this prefix.
    pub fn compose(prefix: &crate::SerialPrefix, number: u64) -> Self {
        Self(format!("{}{number:06}", prefix.as_str()))
    }

    /// Accepts a stored or searched serial: 1 to 40 letters, digits or dashes.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let s = s.trim();
        if s.is_empty() || s.len() > 40 || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(DomainError::invalid(
                "serial",
                "a serial has 1 to 40 letters, digits or dashes",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How many cards one request creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount(u32);

impl Amount {
    pub const MAX: i64 = 1000;

    pub fn parse(n: i64) -> Result<Self, DomainError> {
        if (1..=Self::MAX).contains(&n) {
            Ok(Self(u32::try_from(n).expect("bounded above")))
        } else {
            Err(DomainError::invalid(
                "amount",
                format!("amount must be between 1 and {}, got {n}", Self::MAX),
            ))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// A card as the domain sees it, whatever its area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub id: CardId,
    pub serial: Serial,
    pub template: TemplateId,
    pub state: CardState,
    pub holder: Option<PersonId>,
    pub valid_until: Option<Timestamp>,
    pub encoded: bool,
    pub batch_order: Option<BatchOrderId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names() {
        for state in CardState::all() {
            assert_eq!(state.as_str().parse::<CardState>(), Ok(state));
        }
        assert!("lost".parse::<CardState>().is_err());
    }

    #[test]
    fn amount_is_bounded() {
        assert!(Amount::parse(0).is_err());
        assert!(Amount::parse(-3).is_err());
        assert!(Amount::parse(1001).is_err());
        assert_eq!(Amount::parse(1000).map(Amount::get), Ok(1000));
    }

    #[test]
    fn serials_are_padded_and_validated() {
        let prefix = crate::SerialPrefix::parse("TMP-").unwrap();
        assert_eq!(Serial::compose(&prefix, 42).as_str(), "TMP-000042");
        assert!(Serial::parse("TMP 1").is_err());
        assert!(Serial::parse("").is_err());
    }
}
