//! Card templates: what kind of card is made and how its serials look.

use std::fmt;
use std::str::FromStr;

use crate::error::DomainError;
use crate::ids::TemplateId;
use crate::text::{FreeText, TextRule};

/// The kind of card a template makes. Only temporary cards exist so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    Temporary,
}

impl TemplateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateKind::Temporary => "temporary",
        }
    }
}

impl fmt::Display for TemplateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TemplateKind {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "temporary" => Ok(TemplateKind::Temporary),
            _ => Err(DomainError::invalid(
                "kind",
                format!("'{s}' is not a template kind; use temporary"),
            )),
        }
    }
}

/// A template's name: free text ([`crate::text`]) of one line, 1 to 64 characters; unique.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TemplateName(String);

impl TemplateName {
    pub const RULE: TextRule = TextRule::line(64);

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        FreeText::parse("name", Self::RULE, s).map(|text| Self(text.into_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A template's description: free text of one line, at most 500 characters, or none.
pub const DESCRIPTION_RULE: TextRule = TextRule::line(500).or_empty();

/// The start of every serial of a template: 1 to 12 upper-case letters, digits or dashes. Unique
/// among templates, so serials never collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SerialPrefix(String);

impl SerialPrefix {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let s = s.trim();
        if (1..=12).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-')
        {
            Ok(Self(s.to_owned()))
        } else {
            Err(DomainError::invalid(
                "serial_prefix",
                "a serial prefix has 1 to 12 upper-case letters, digits or dashes",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A card template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardTemplate {
    pub id: TemplateId,
    pub name: TemplateName,
    pub kind: TemplateKind,
    pub serial_prefix: SerialPrefix,
    pub description: String,
    /// The front and back layouts (SVG); `None` means the shipped temporary card layout.
    pub front_layout: Option<String>,
    pub back_layout: Option<String>,
}

/// The temporary card template every fresh database has.
pub const DEFAULT_TEMPLATE_NAME: &str = "Temporary card";
/// Its serial prefix.
pub const DEFAULT_TEMPLATE_PREFIX: &str = "TMP-";
