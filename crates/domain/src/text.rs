//! Text that people read: names printed on cards, shown in lists and written to the audit log.
//!
//! Besides control characters, some characters change how the text around them is shown
//! without being seen themselves: bidirectional overrides turn `Ann` into what looks like
//! another name, zero-width characters (joiners included) make two names that look alike differ,
//! line separators break a log line. Such text is refused where it enters.

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

fn is_hidden(c: char) -> bool {
    c.is_control() || HIDDEN.iter().any(|(from, to)| (*from..=*to).contains(&c))
}

#[cfg(test)]
mod tests {
    use super::has_hidden_characters;

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
}
