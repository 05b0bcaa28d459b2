//! Why a card is withdrawn or locked: a reason from a fixed list, and a comment.

use std::fmt;
use std::str::FromStr;

use crate::error::DomainError;
use crate::text::{FreeText, TextRule};

/// The fixed list of reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasonKind {
    Lost,
    Stolen,
    Damaged,
    Returned,
    Other,
}

impl ReasonKind {
    pub const ALL: [ReasonKind; 5] = [
        ReasonKind::Lost,
        ReasonKind::Stolen,
        ReasonKind::Damaged,
        ReasonKind::Returned,
        ReasonKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReasonKind::Lost => "lost",
            ReasonKind::Stolen => "stolen",
            ReasonKind::Damaged => "damaged",
            ReasonKind::Returned => "returned",
            ReasonKind::Other => "other",
        }
    }
}

impl fmt::Display for ReasonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReasonKind {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReasonKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s.trim())
            .ok_or_else(|| {
                DomainError::invalid(
                    "reason",
                    format!("'{s}' is not a reason; use lost, stolen, damaged, returned or other"),
                )
            })
    }
}

/// The most characters of a reason's comment.
pub const MAX_COMMENT: usize = 500;

/// Why a card is withdrawn or locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub kind: ReasonKind,
    /// Free text; none when empty.
    pub comment: Option<String>,
}

/// A reason's comment: free text ([`crate::text`]) of any number of lines, at most
/// [`MAX_COMMENT`] characters, or none.
pub const COMMENT_RULE: TextRule = TextRule::lines(MAX_COMMENT).or_empty();

impl Reason {
    /// A reason from its name and an optional comment ([`COMMENT_RULE`]; an empty one is none).
    pub fn parse(kind: &str, comment: Option<&str>) -> Result<Self, DomainError> {
        let kind = kind.parse()?;
        let comment = comment
            .map(|c| FreeText::parse("comment", COMMENT_RULE, c))
            .transpose()?
            .map(FreeText::into_string)
            .filter(|c| !c.is_empty());
        Ok(Self { kind, comment })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_come_from_the_list() {
        let r = Reason::parse("lost", Some("  on the train ")).unwrap();
        assert_eq!(r.kind, ReasonKind::Lost);
        assert_eq!(r.comment.as_deref(), Some("on the train"));
        assert_eq!(Reason::parse("other", Some("")).unwrap().comment, None);
        assert!(Reason::parse("eaten", None).is_err());
        assert!(Reason::parse("lost", Some(&"x".repeat(501))).is_err());
        assert!(Reason::parse("lost", Some("a\u{0}b")).is_err());
        assert!(Reason::parse("lost", Some("\u{b}on the train")).is_err());
        assert!(Reason::parse("lost", Some("on the \u{202E}train")).is_err());
        assert_eq!(
            Reason::parse("lost", Some("on the train\r\nat 9"))
                .unwrap()
                .comment
                .as_deref(),
            Some("on the train\r\nat 9")
        );
    }
}
