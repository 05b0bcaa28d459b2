//! The command line on the real binary.

use std::io::Write as _;
use std::process::{Command, Stdio};

fn cardwright(data_dir: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cardwright"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("CARDWRIGHT_CONFIG")
        .env_remove("CARDWRIGHT_DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cardwright runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn operators_are_added_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (ok, text) = cardwright(data, &["migrate"], "");
    assert!(ok, "{text}");
    let (ok, text) = cardwright(
        data,
        &[
            "operator",
            "add",
            "alice",
            "--role",
            "registration-officer",
            "--role",
            "service-admin",
            "--password-stdin",
        ],
        "a long passphrase\n",
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("registration-officer,service-admin"),
        "{text}"
    );
    let (ok, text) = cardwright(
        data,
        &[
            "operator",
            "add",
            "alice",
            "--role",
            "policy-admin",
            "--password-stdin",
        ],
        "another long one\n",
    );
    assert!(!ok && text.contains("exists already"), "{text}");
    let (ok, text) = cardwright(
        data,
        &[
            "operator",
            "add",
            "bob",
            "--role",
            "admin",
            "--password-stdin",
        ],
        "a long passphrase\n",
    );
    assert!(!ok && text.contains("'admin' is not a role"), "{text}");
    let (ok, text) = cardwright(
        data,
        &[
            "operator",
            "add",
            "bob",
            "--role",
            "policy-admin",
            "--password-stdin",
        ],
        "short\n",
    );
    assert!(!ok && text.contains("password"), "{text}");
    let (ok, text) = cardwright(data, &["operator", "list"], "");
    assert!(ok, "{text}");
    assert!(text.contains("alice") && !text.contains("bob"), "{text}");
    let (ok, text) = cardwright(data, &["audit", "verify"], "");
    assert!(ok && text.contains("intact"), "{text}");
    let (ok, text) = cardwright(data, &["serve", "--listen", "nowhere"], "");
    assert!(!ok && text.contains("listen"), "{text}");
}

/// Runs statements on the data folder's SQLite database, as someone with access to the file can.
fn tamper(data_dir: &std::path::Path, statements: &[&str]) {
    use sqlx::{Connection as _, Executor as _};
    let url = cardwright_storage::Store::sqlite_url(&data_dir.join("cardwright.db"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        for statement in statements {
            conn.execute(*statement).await.unwrap();
        }
        conn.close().await.unwrap();
    });
}

#[test]
fn audit_verify_reports_the_last_signed_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    for name in ["alice", "bob", "carol"] {
        let (ok, text) = cardwright(
            data,
            &[
                "operator",
                "add",
                name,
                "--role",
                "service-admin",
                "--password-stdin",
            ],
            "a long passphrase\n",
        );
        assert!(ok, "{text}");
    }
    let (ok, text) = cardwright(data, &["audit", "verify"], "");
    assert!(ok, "{text}");
    // The three operators and the default template and option script saved at the first start.
    let events: i64 = text
        .split("audit log intact: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no event count in: {text}"));
    assert!(events >= 3, "{text}");
    assert!(
        text.contains(&format!(
            "{events} events verified, last signed checkpoint at event {events}"
        )),
        "{text}"
    );

    // The newest event is removed and the head moved back onto the one before it.
    let kept = events - 1;
    tamper(
        data,
        &[
            &format!("DELETE FROM audit_events WHERE seq = {events}"),
            &format!(
                "UPDATE audit_head SET seq = {kept}, \
                 hash = (SELECT hash FROM audit_events WHERE seq = {kept})"
            ),
        ],
    );
    let (ok, text) = cardwright(data, &["audit", "verify"], "");
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("audit log broken at event {kept}"))
            && text.contains(&format!(
                "the last signed checkpoint that holds is event {kept}"
            )),
        "{text}"
    );
}

#[test]
fn benchmarks_run_on_a_scratch_database() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = cardwright(
        dir.path(),
        &["bench", "order", "--cards", "40", "--stations", "2"],
        "",
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("40 cards requested, ordered, produced") && text.contains("cards/s"),
        "{text}"
    );
    let (ok, text) = cardwright(
        dir.path(),
        &["bench", "list", "--cards", "3000", "--rounds", "5"],
        "",
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("with 3000 cards stored (600 requested") && text.contains("median"),
        "{text}"
    );
    let (ok, text) = cardwright(dir.path(), &["bench", "audit", "--events", "30"], "");
    assert!(ok, "{text}");
    assert!(
        text.contains("30 appended, each in its own transaction") && text.contains("events/s"),
        "{text}"
    );
    assert!(
        !dir.path().join("cardwright.db").exists(),
        "benchmarks leave the data folder alone"
    );
}

/// Every file below `dir` with its length, modification time and mode. SQLite's `-shm` file is
/// the WAL's shared-memory index, not data: any reader may rebuild it (the first connection
/// after the last one closed does), so its time is left out.
fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64, std::time::SystemTime, u32)> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().filter_map(Result::ok) {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                folders.push(entry.path());
            }
            let shared_memory = entry.path().to_string_lossy().ends_with("-shm");
            out.push((
                entry.path(),
                meta.len(),
                if shared_memory {
                    std::time::UNIX_EPOCH
                } else {
                    meta.modified().unwrap()
                },
                meta.permissions().mode(),
            ));
        }
    }
    out.sort();
    out
}

/// `audit verify` only reads: it changes no file of the data folder, creates none, and refuses
/// to run where there is nothing to verify rather than setting up a server there.
#[test]
fn audit_verify_touches_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ok, text) = cardwright(
        &data,
        &[
            "operator",
            "add",
            "ann",
            "--role",
            "service-admin",
            "--password-stdin",
        ],
        "correct horse battery\n",
    );
    assert!(ok, "{text}");
    let before = snapshot(&data);
    let (ok, text) = cardwright(&data, &["audit", "verify"], "");
    assert!(ok, "{text}");
    assert!(text.contains("audit log intact"), "{text}");
    assert_eq!(snapshot(&data), before, "verify changed the data folder");

    let empty = dir.path().join("nothing-here");
    let (ok, text) = cardwright(&empty, &["audit", "verify"], "");
    assert!(!ok, "{text}");
    assert!(text.contains("master key"), "{text}");
    assert!(!empty.exists(), "verify created {}", empty.display());
}
