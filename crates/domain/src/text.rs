//! Text that people write and read: names printed on cards, descriptions and comments shown in
//! lists and written to the audit log.
//!
//! Besides control characters, some characters change how the text around them is shown
//! without being seen themselves: bidirectional overrides turn `Ann` into what looks like
//! another name, zero-width characters (joiners included) make two names that look alike differ,
//! line separators break a log line. Such text is refused where it enters, wherever the
//! character stands in it: what the rules forbid is never trimmed away, so the text kept is the
//! text sent, less the plain spaces around it.
//!
//! Every free-text field of the system is read with [`FreeText::parse`] and a [`TextRule`], and
//! the API's document states the same rule as a pattern built from it.

use std::fmt;

use crate::error::DomainError;

/// Whether `s` holds a control character or one of the invisible formatting characters above.
pub fn has_hidden_characters(s: &str) -> bool {
    s.chars().any(is_hidden)
}

/// The invisible formatting characters refused besides the control characters, as ranges of
/// code points (all in the Basic Multilingual Plane, so a pattern can name them too).
pub const HIDDEN: [(char, char); 14] = [
    ('\u{00AD}', '\u{00AD}'), // soft hyphen
    ('\u{061C}', '\u{061C}'), // Arabic letter mark
    ('\u{115F}', '\u{1160}'), // Hangul fillers
    ('\u{180E}', '\u{180E}'), // Mongolian vowel separator
    ('\u{200B}', '\u{200F}'), // zero-width space, (non-)joiners, direction marks
    ('\u{2028}', '\u{2029}'), // line and paragraph separators
    ('\u{202A}', '\u{202E}'), // bidirectional embeddings and overrides
    ('\u{2060}', '\u{2064}'), // word joiner, invisible operators
    ('\u{2066}', '\u{2069}'), // bidirectional isolates
    ('\u{206A}', '\u{206F}'), // deprecated formatting
    ('\u{3164}', '\u{3164}'), // Hangul filler
    ('\u{FEFF}', '\u{FEFF}'), // byte order mark, zero-width no-break space
    ('\u{FFA0}', '\u{FFA0}'), // halfwidth Hangul filler
    ('\u{FFF9}', '\u{FFFB}'), // interlinear annotations
];

fn is_invisible_formatting(c: char) -> bool {
    HIDDEN.iter().any(|(from, to)| (*from..=*to).contains(&c))
}

fn is_hidden(c: char) -> bool {
    c.is_control() || is_invisible_formatting(c)
}

/// The spaces trimmed from around free text: Unicode white space that is neither a control
/// character (a tab, a line break) nor an invisible formatting character (the line and
/// paragraph separators). A plain space, a no-break space or an ideographic space is one.
pub fn is_plain_space(c: char) -> bool {
    c.is_whitespace() && !is_hidden(c)
}

/// The line breaks that multi-line text may hold: line feed and carriage return (a browser
/// sends a text area's lines with both).
pub fn is_line_break(c: char) -> bool {
    matches!(c, '\n' | '\r')
}

/// What a free-text field admits besides the rules every free text follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRule {
    /// The most characters, counted as sent (spaces around the text included), so that the
    /// limit is one plain `maxLength` in the API's document.
    pub max_chars: usize,
    /// Whether it may be empty (or only spaces), which leaves it empty.
    pub may_be_empty: bool,
    /// Whether it may span lines (a comment, a mail's body); line breaks around it are trimmed
    /// like spaces.
    pub lines: bool,
}

impl TextRule {
    /// One line of 1 to `max_chars` characters.
    pub const fn line(max_chars: usize) -> Self {
        Self {
            max_chars,
            may_be_empty: false,
            lines: false,
        }
    }

    /// Lines of 1 to `max_chars` characters in all.
    pub const fn lines(max_chars: usize) -> Self {
        Self {
            max_chars,
            may_be_empty: false,
            lines: true,
        }
    }

    /// The same rule, and the field may also be left empty.
    #[must_use]
    pub const fn or_empty(self) -> Self {
        Self {
            may_be_empty: true,
            ..self
        }
    }

    /// Whether `c` is trimmed from around the text.
    pub fn trims(self, c: char) -> bool {
        is_plain_space(c) || (self.lines && is_line_break(c))
    }

    /// Whether `c` may stand anywhere in the text.
    pub fn admits(self, c: char) -> bool {
        !is_hidden(c) || (self.lines && is_line_break(c))
    }
}

/// What is wrong with a free text, for the message that names its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextProblem {
    Empty,
    TooLong {
        max_chars: usize,
    },
    /// A control character; `lines` says whether line breaks were allowed.
    Control {
        lines: bool,
    },
    /// An invisible formatting character ([`HIDDEN`]).
    InvisibleFormatting,
}

impl fmt::Display for TextProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextProblem::Empty => f.write_str("may not be empty"),
            TextProblem::TooLong { max_chars } => write!(f, "has at most {max_chars} characters"),
            TextProblem::Control { lines: false } => f.write_str(
                "may not contain control characters (such as tabs, vertical tabs or line breaks)",
            ),
            TextProblem::Control { lines: true } => {
                f.write_str("may not contain control characters other than line breaks")
            }
            TextProblem::InvisibleFormatting => f.write_str(
                "may not contain invisible formatting characters (such as bidirectional \
                 overrides, zero-width characters or line separators)",
            ),
        }
    }
}

/// Free text that follows its field's [`TextRule`]: no control characters (but line breaks in
/// multi-line text) and no invisible formatting characters anywhere, within its length, and not
/// blank unless the field may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FreeText(String);

impl FreeText {
    /// Reads `s` as the field `field` under `rule`. Characters the rule forbids are refused
    /// wherever they stand, also at either end; only plain spaces (and, in multi-line text, line
    /// breaks) are trimmed from around it.
    pub fn parse(field: &'static str, rule: TextRule, s: &str) -> Result<Self, DomainError> {
        let refuse = |problem| Err(DomainError::Text { field, problem });
        if let Some(c) = s.chars().find(|c| !rule.admits(*c)) {
            return refuse(if c.is_control() {
                TextProblem::Control { lines: rule.lines }
            } else {
                TextProblem::InvisibleFormatting
            });
        }
        if s.chars().count() > rule.max_chars {
            return refuse(TextProblem::TooLong {
                max_chars: rule.max_chars,
            });
        }
        let s = s.trim_matches(|c| rule.trims(c));
        if s.is_empty() && !rule.may_be_empty {
            return refuse(TextProblem::Empty);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for FreeText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_formatting_is_found() {
        for s in [
            "Ann\u{202E}nosrednA",
            "Jo\u{200B}hn",
            "\u{FEFF}Ann",
            "Ann\u{2028}Lee",
            "Ann\u{2066}",
            "Ann\u{200D}",
            "A\u{200C}nn",
            "Ann\u{1b}[31m",
        ] {
            assert!(has_hidden_characters(s), "{s:?}");
        }
        for s in ["Åsa", "O'Brien-Smith", "José María", "李小龍"] {
            assert!(!has_hidden_characters(s), "{s:?}");
        }
    }

    fn problem(rule: TextRule, s: &str) -> Option<TextProblem> {
        match FreeText::parse("description", rule, s) {
            Ok(_) => None,
            Err(DomainError::Text { field, problem }) => {
                assert_eq!(field, "description");
                Some(problem)
            }
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn control_characters_are_refused_also_at_either_end() {
        let line = TextRule::line(200).or_empty();
        for s in [
            "\u{b}front desk",
            "front desk\u{b}",
            "\tfront desk",
            "front desk\n",
            "\r\n",
            "front\u{0}desk",
            "\u{85}front desk",
            "front desk\u{9f}",
        ] {
            assert_eq!(
                problem(line, s),
                Some(TextProblem::Control { lines: false }),
                "{s:?}"
            );
        }
        let lines = TextRule::lines(500);
        for s in ["\u{b}on the train", "on\u{c}the train", "\ton the train"] {
            assert_eq!(
                problem(lines, s),
                Some(TextProblem::Control { lines: true }),
                "{s:?}"
            );
        }
    }

    #[test]
    fn invisible_formatting_is_refused_in_every_rule() {
        for rule in [TextRule::line(200).or_empty(), TextRule::lines(500)] {
            for s in [
                "front \u{202E}ksed",
                "\u{202A}front desk",
                "front desk\u{2069}",
                "\u{200E}front",
                "front\u{200F}",
                "front\u{061C}desk",
                "front\u{2028}desk",
                "\u{FEFF}",
            ] {
                assert_eq!(
                    problem(rule, s),
                    Some(TextProblem::InvisibleFormatting),
                    "{s:?} under {rule:?}"
                );
            }
        }
    }

    #[test]
    fn plain_spaces_around_the_text_are_trimmed_and_counted_in() {
        let name = TextRule::line(7);
        let parsed = FreeText::parse("name", name, " \u{a0}Åsa\u{3000} ").unwrap();
        assert_eq!(parsed.as_str(), "Åsa");
        assert_eq!(
            FreeText::parse("name", name, " abcde ").unwrap().as_str(),
            "abcde"
        );
        assert_eq!(
            problem(name, "  abcde "),
            Some(TextProblem::TooLong { max_chars: 7 })
        );
        assert_eq!(
            problem(name, "abcdefgh"),
            Some(TextProblem::TooLong { max_chars: 7 })
        );
        assert_eq!(problem(name, "   "), Some(TextProblem::Empty));
        assert_eq!(problem(name, ""), Some(TextProblem::Empty));
        assert_eq!(
            FreeText::parse("name", name.or_empty(), "  ")
                .unwrap()
                .as_str(),
            ""
        );
        assert_eq!(
            FreeText::parse("name", name, "a b").unwrap().as_str(),
            "a b"
        );
    }

    #[test]
    fn multi_line_text_keeps_its_inner_line_breaks() {
        let rule = TextRule::lines(500);
        assert_eq!(
            FreeText::parse("comment", rule, "\r\n on the train\r\nline 2 \n")
                .unwrap()
                .as_str(),
            "on the train\r\nline 2"
        );
        assert_eq!(problem(rule, "\n \n"), Some(TextProblem::Empty));
        assert_eq!(
            problem(TextRule::line(500), "a\nb"),
            Some(TextProblem::Control { lines: false })
        );
    }

    #[test]
    fn the_message_names_the_field() {
        let e = FreeText::parse("description", TextRule::line(200), "\u{b}desk").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("description may not contain control characters"),
            "{e}"
        );
        let e = FreeText::parse("given_name", TextRule::line(100), "A\u{202E}").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("given_name may not contain invisible formatting characters"),
            "{e}"
        );
    }
}
