//! Text that people read: names printed on cards, shown in lists and written to the audit log.
//!
//! Besides control characters, some characters change how the text around them is shown
//! without being seen themselves: bidirectional overrides turn `Ann` into what looks like
//! another name, zero-width characters make two names that look alike differ, line separators
//! break a log line. Such text is refused where it enters.

/// Whether `c` is a control character or one of the invisible formatting characters above.
/// Zero-width (non-)joiners are let through between two non-ASCII letters, where scripts such
/// as Persian and the Indic ones need them; anywhere else they only hide a difference.
pub fn has_hidden_characters(s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    chars.iter().enumerate().any(|(i, &c)| match c {
        '\u{200C}' | '\u{200D}' => {
            let letter = |n: Option<&char>| n.is_some_and(|n| n.is_alphabetic() && !n.is_ascii());
            !(i > 0 && letter(chars.get(i - 1)) && letter(chars.get(i + 1)))
        }
        _ => is_hidden(c),
    })
}

fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'                // soft hyphen
            | '\u{061C}'              // Arabic letter mark
            | '\u{115F}' | '\u{1160}' // Hangul fillers
            | '\u{180E}'              // Mongolian vowel separator
            | '\u{200B}'              // zero-width space
            | '\u{200E}' | '\u{200F}' // left-to-right and right-to-left marks
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202A}'..='\u{202E}' // bidirectional embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}' // bidirectional isolates
            | '\u{206A}'..='\u{206F}' // deprecated formatting
            | '\u{3164}'              // Hangul filler
            | '\u{FEFF}'              // byte order mark, zero-width no-break space
            | '\u{FFA0}'              // halfwidth Hangul filler
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotations
            | '\u{E0000}'..='\u{E007F}' // tags
        )
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
        for s in [
            "Åsa",
            "O'Brien-Smith",
            "José María",
            "می\u{200C}خواهم",
            "李小龍",
        ] {
            assert!(!has_hidden_characters(s), "{s:?}");
        }
    }
}
