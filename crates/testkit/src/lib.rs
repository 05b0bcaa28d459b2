//! The one rule for a test whose real part is missing (a program such as `pdfinfo`, a module
//! such as SoftHSM2, a PostgreSQL server, a browser driver). A part counts as present only when
//! it answers ([`require`] with a [`Part`]): a program that runs, a library that is one, a
//! server that takes a connection or answers a request. When one does not:
//!
//! - with `CI=true` (or `1`, `yes`) the test fails, naming what to install;
//! - elsewhere it says what to install and ends early, and the skip is recorded in the file
//!   `TEST_SKIP_LOG` names (the test command, `scripts/test`, counts them in its closing
//!   `skipped: N` line), so a skip is never counted as a pass without a word.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// A real part a test needs. It counts as present only when it answers: a program that runs, a
/// library that is one, a server that takes a connection or answers a request.
#[derive(Debug, Clone, Copy)]
pub enum Part<'a> {
    /// A program started with these arguments (its version, usually) that answers within ten
    /// seconds: it exits successfully, or prints something (a usage text) before it exits.
    Program(&'a str, &'a [&'a str]),
    /// A program that must exit successfully with these arguments (`avahi-daemon --check`: the
    /// daemon runs).
    Succeeds(&'a str, &'a [&'a str]),
    /// A shared library, such as a PKCS#11 module: a readable file with an ELF header.
    Library(&'a Path),
    /// A file that must be there and readable (a package's entry point).
    File(&'a Path),
    /// A PostgreSQL server, by its URL (`postgres://USER@HOST:PORT/DB`): it takes a connection.
    Postgres(&'a str),
    /// An HTTP server: `GET` of this `http://` URL answers 2xx within ten seconds.
    Http(&'a str),
}

/// How long a part may take to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Whether `part` answers; else what is missing, in words.
pub fn answers(part: &Part<'_>) -> Result<(), String> {
    match *part {
        Part::Program(program, args) => run(program, args, false),
        Part::Succeeds(program, args) => run(program, args, true),
        Part::Library(path) => {
            let mut magic = [0u8; 4];
            std::fs::File::open(path)
                .and_then(|mut f| f.read_exact(&mut magic))
                .ok()
                .filter(|()| magic == *b"\x7fELF")
                .ok_or_else(|| format!("the library {}", path.display()))
        }
        Part::File(path) => std::fs::File::open(path)
            .map(drop)
            .map_err(|_| path.display().to_string()),
        Part::Postgres(url) => {
            let addr = postgres_address(url)
                .ok_or_else(|| format!("a PostgreSQL server (cannot read the URL {url})"))?;
            connect(&addr)
                .map(drop)
                .map_err(|_| format!("a PostgreSQL server answering at {addr} (TEST_DATABASE_URL)"))
        }
        Part::Http(url) => http_ok(url).map_err(|why| format!("a server answering {url} ({why})")),
    }
}

/// The one rule for every test with a real part: checks that each of `parts` answers; if one
/// does not, applies [`skip`] naming it (a failure with `CI=true`) and returns false. `install`
/// says how to get them (for example the Debian package, or `scripts/test`).
pub fn require(parts: &[Part<'_>], install: &str) -> bool {
    for part in parts {
        if let Err(missing) = answers(part) {
            skip(&missing, install);
            return false;
        }
    }
    true
}

/// Checks that every program in `programs` runs and answers (asked for its version); else
/// applies [`skip`] and returns false.
pub fn require_programs(programs: &[&str], install: &str) -> bool {
    let parts: Vec<Part<'_>> = programs
        .iter()
        .map(|p| Part::Program(p, version_arguments(p)))
        .collect();
    require(&parts, install)
}

/// Checks that `file` is there and readable (a PKCS#11 module is checked to be a library);
/// else applies [`skip`] and returns false.
pub fn require_file(file: &Path, install: &str) -> bool {
    let is_library = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("so"));
    require(
        &[if is_library {
            Part::Library(file)
        } else {
            Part::File(file)
        }],
        install,
    )
}

/// What a program is asked so that it answers without doing anything.
fn version_arguments(program: &str) -> &'static [&'static str] {
    let name = program.rsplit('/').next().unwrap_or(program);
    match name {
        "pdfinfo" | "pdftotext" | "pdftoppm" => &["-v"],
        "openssl" => &["version"],
        "slapd" | "ldapsearch" => &["-VV"],
        "pkcs11-tool" => &["--help"],
        _ => &["--version"],
    }
}

/// Starts `program` with `args` and waits for it to answer: to exit successfully, or (unless
/// `must_succeed`) to print something before exiting.
fn run(program: &str, args: &[&str], must_succeed: bool) -> Result<(), String> {
    let missing = || format!("the program `{program}`");
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|_| missing())?;
    let deadline = Instant::now() + ANSWER_WITHIN;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} (it did not answer)", missing()));
            }
        }
    };
    let mut said = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_end(&mut said);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_end(&mut said);
    }
    if status.success() || (!must_succeed && !said.is_empty()) {
        Ok(())
    } else if must_succeed {
        Err(format!("`{program} {}` to succeed", args.join(" ")))
    } else {
        Err(format!("{} (it did not answer)", missing()))
    }
}

/// `HOST:PORT` of a `postgres://` URL (port 5432 when none is given).
fn postgres_address(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))?;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit('@').next()?;
    if host_port.is_empty() {
        return Some("127.0.0.1:5432".into());
    }
    if host_port.starts_with('[') || host_port.contains(':') {
        Some(host_port.to_owned())
    } else {
        Some(format!("{host_port}:5432"))
    }
}

fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::other("no address");
    for socket in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&socket, ANSWER_WITHIN) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// `GET url` over HTTP/1.1; Ok when the status is 2xx. Only the status line is read, so a
/// server that keeps the connection open answers as quickly as one that closes it.
fn http_ok(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("http://").ok_or("not an http:// URL")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut stream = connect(authority).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(ANSWER_WITHIN))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 512];
    while !answer.windows(2).any(|w| w == b"\r\n") && answer.len() < 8192 {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.split_whitespace().nth(1).unwrap_or("none");
    if status.starts_with('2') {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_counts_only_when_it_answers() {
        assert!(answers(&Part::Program("sh", &["-c", "echo 1"])).is_ok());
        assert!(answers(&Part::Program("no-such-program-anywhere", &[])).is_err());
        // Runs, but says nothing and fails: not an answer.
        assert!(answers(&Part::Program("false", &[])).is_err());
        assert!(answers(&Part::Succeeds("sh", &["-c", "echo no; exit 1"])).is_err());
        assert!(answers(&Part::Program("sh", &["-c", "echo usage; exit 2"])).is_ok());
    }

    #[test]
    fn files_and_libraries_are_read() {
        let dir = std::env::temp_dir().join(format!("testkit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("fake.so");
        std::fs::write(&fake, b"not a library").unwrap();
        assert!(answers(&Part::Library(&fake)).is_err());
        assert!(answers(&Part::File(&fake)).is_ok());
        assert!(answers(&Part::File(&dir.join("missing"))).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn servers_count_only_when_they_answer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
        });
        assert!(answers(&Part::Http(&format!("http://127.0.0.1:{port}/status"))).is_ok());
        server.join().unwrap();
        // Nobody listens there any more.
        assert!(answers(&Part::Http(&format!("http://127.0.0.1:{port}/status"))).is_err());
        assert!(answers(&Part::Postgres(&format!(
            "postgres://u@127.0.0.1:{port}/db"
        )))
        .is_err());
        assert_eq!(
            postgres_address("postgres://postgres@127.0.0.1:5432/test?options=x").as_deref(),
            Some("127.0.0.1:5432")
        );
        assert_eq!(
            postgres_address("postgres://db.example.org/cards").as_deref(),
            Some("db.example.org:5432")
        );
    }
}
