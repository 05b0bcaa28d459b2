//! The one rule for a test whose real part is missing (a program such as `pdfinfo`, a module
//! such as SoftHSM2, a PostgreSQL server, a browser driver):
//!
//! - with `CI=true` (or `1`, `yes`) the test fails, naming what to install;
//! - elsewhere it says what to install and ends early, and the skip is recorded in the file
//!   `TEST_SKIP_LOG` names (the test command, `scripts/test`, counts them in its closing
//!   `skipped: N` line), so a skip is never counted as a pass without a word.

use std::io::Write as _;
use std::path::Path;

/// Whether this run is CI, where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
}

/// Records that the running test (named by its thread, as the test harness names it) could not
/// run its real part: `missing` is what was not found and `install` how to get it. Panics with
/// `CI=true`; otherwise the caller returns early.
pub fn skip(missing: &str, install: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    assert!(
        !in_ci(),
        "{test}: {missing} is missing, and with CI=true no test may be skipped; {install}"
    );
    let line = format!("skipped: {test}: {missing} is missing; {install}");
    eprintln!("{line}");
    if let Some(log) = std::env::var_os("TEST_SKIP_LOG") {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(file, "{line}");
        }
    }
}

/// Whether `program` is on the `PATH` (or is a path to an existing file).
pub fn has_program(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Checks that every program in `programs` is there; if one is not, applies [`skip`] and
/// returns false. `install` says how to get them (for example the Debian package).
pub fn require_programs(programs: &[&str], install: &str) -> bool {
    match programs.iter().find(|p| !has_program(p)) {
        None => true,
        Some(missing) => {
            skip(&format!("the program `{missing}`"), install);
            false
        }
    }
}

/// Checks that `file` exists (a PKCS#11 module, for instance); else applies [`skip`].
pub fn require_file(file: &Path, install: &str) -> bool {
    if file.is_file() {
        true
    } else {
        skip(&file.display().to_string(), install);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_on_the_path() {
        assert!(has_program("sh"));
        assert!(!has_program("no-such-program-anywhere"));
        assert!(has_program("/bin/sh"));
    }
}
