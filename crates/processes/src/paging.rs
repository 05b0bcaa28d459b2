//! Pages of lists: the page size rule and cursors.

use crate::ProcessError;

/// The largest page any list returns.
pub const MAX_PAGE: u32 = 500;
/// The page size when none is asked for.
pub const DEFAULT_PAGE: u32 = 50;

/// Checks a requested page size.
pub fn page_limit(limit: Option<i64>) -> Result<u32, ProcessError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=i64::from(MAX_PAGE)).contains(&n) => Ok(u32::try_from(n).expect("bounded")),
        Some(n) => Err(ProcessError::Invalid(format!(
            "limit must be between 1 and {MAX_PAGE}, got {n}"
        ))),
    }
}

/// The refusal of a cursor that no list of this kind gave out.
pub(crate) fn bad_cursor() -> ProcessError {
    ProcessError::Invalid("cursor: not a cursor returned by this list".into())
}

/// Trims a page read with one extra row and returns the next page's cursor if there is one.
pub(crate) fn next_cursor<T>(
    page: &mut Vec<T>,
    limit: u32,
    key: impl Fn(&T) -> String,
) -> Option<String> {
    if page.len() > limit as usize {
        page.truncate(limit as usize);
        page.last().map(key)
    } else {
        None
    }
}
