//! Persons: the employees who hold cards.

use std::fmt;
use std::str::FromStr;

use crate::error::DomainError;
use crate::ids::PersonId;
use crate::text::{FreeText, TextRule};

/// Whether a person may be given a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonState {
    Active,
    Inactive,
}

impl PersonState {
    pub fn as_str(self) -> &'static str {
        match self {
            PersonState::Active => "active",
            PersonState::Inactive => "inactive",
        }
    }
}

impl fmt::Display for PersonState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PersonState {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(PersonState::Active),
            "inactive" => Ok(PersonState::Inactive),
            _ => Err(DomainError::invalid(
                "state",
                format!("'{s}' is not a person state; use active or inactive"),
            )),
        }
    }
}

/// An employee number: 1 to 32 letters, digits or dashes, unique among persons.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmployeeNumber(String);

impl EmployeeNumber {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let s = s.trim();
        if (1..=32).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            Ok(Self(s.to_owned()))
        } else {
            Err(DomainError::invalid(
                "employee_number",
                "an employee number has 1 to 32 letters, digits or dashes",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A given or family name: free text ([`crate::text`]) of one line, 1 to 100 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    pub const RULE: TextRule = TextRule::line(100);

    pub fn parse(field: &'static str, s: &str) -> Result<Self, DomainError> {
        FreeText::parse(field, Self::RULE, s).map(|text| Self(text.into_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address, checked for its shape only (`local@domain.tld`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// The most characters an email field takes, surrounding spaces included.
    pub const MAX_CHARS: usize = 254;

    /// An optional email as received: empty or blank means none. The length is checked before
    /// anything else, blank or not, so the limit is one plain `maxLength` in the API.
    pub fn parse_optional(s: &str) -> Result<Option<Self>, DomainError> {
        if s.chars().count() > Self::MAX_CHARS {
            return Err(DomainError::invalid(
                "email",
                format!("an email has at most {} characters", Self::MAX_CHARS),
            ));
        }
        if s.trim().is_empty() {
            return Ok(None);
        }
        Self::parse(s).map(Some)
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let length_ok = s.chars().count() <= Self::MAX_CHARS;
        let s = s.trim();
        let shaped = s.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        });
        if shaped
            && length_ok
            && !s.chars().any(char::is_whitespace)
            && !crate::text::has_hidden_characters(s)
        {
            Ok(Self(s.to_owned()))
        } else {
            Err(DomainError::invalid(
                "email",
                format!("'{s}' is not an email address"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An employee who may hold cards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: PersonId,
    pub employee_number: EmployeeNumber,
    pub given_name: PersonName,
    pub family_name: PersonName,
    pub email: Option<Email>,
    pub state: PersonState,
}

impl Person {
    pub fn display_name(&self) -> String {
        format!("{} {}", self.given_name.as_str(), self.family_name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_need_a_domain() {
        assert!(Email::parse("ann@example.org").is_ok());
        assert!(Email::parse("ann@localhost").is_err());
        assert!(Email::parse("ann example.org").is_err());
        assert!(Email::parse("@example.org").is_err());
    }

    #[test]
    fn an_optional_email_is_none_when_blank_and_bounded_either_way() {
        assert_eq!(Email::parse_optional(" \t"), Ok(None));
        assert_eq!(
            Email::parse_optional(" ann@example.org ").map(|e| e.map(|e| e.0)),
            Ok(Some("ann@example.org".to_owned()))
        );
        assert!(Email::parse_optional(&" ".repeat(255)).is_err());
        let longest = format!("{}@example.org", "å".repeat(254 - "@example.org".len()));
        assert!(Email::parse_optional(&longest).is_ok());
        assert!(Email::parse_optional(&format!(" {longest}")).is_err());
    }

    #[test]
    fn names_refuse_control_characters() {
        assert!(PersonName::parse("given_name", "Ann\u{0}").is_err());
        assert!(PersonName::parse("given_name", "  ").is_err());
        assert!(PersonName::parse("family_name", "Lee\u{202E}").is_err());
        assert!(PersonName::parse("family_name", "\u{b}Lee").is_err());
        assert!(PersonName::parse("family_name", "Lee\t").is_err());
        assert!(Email::parse("ann\u{200B}@example.org").is_err());
        assert_eq!(
            PersonName::parse("given_name", " Åsa ").unwrap().as_str(),
            "Åsa"
        );
    }
}
