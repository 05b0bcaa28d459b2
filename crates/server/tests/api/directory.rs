//! Persons from OpenLDAP's slapd, started by each test on a loopback port with a generated
//! directory of 1,000 people: create, update, deactivate (with the cards of who left), photos
//! (`jpegPhoto`) set, changed and removed, a second sync that changes nothing, and a wrong bind
//! password that changes nothing.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use cardwright::config::DirectoryConfig;
use cardwright_processes::persons_import::ImportReport;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{free_port, spawn_app, Db, TestApp};
use crate::on_both_databases;

const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";
const BASE: &str = "dc=example,dc=org";
const ADMIN: &str = "cn=admin,dc=example,dc=org";
const SECRET: &str = "directory secret";

/// A slapd of its own, in a temporary folder.
struct Slapd {
    child: Child,
    port: u16,
    /// With TLS: the ldaps:// port and the test CA's certificate.
    tls: Option<(u16, std::path::PathBuf)>,
    _dir: tempfile::TempDir,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn person_ldif(n: usize, family: &str) -> String {
    let photo = match n {
        13 => format!("jpegPhoto:: {}\n", B64.encode(b"this is not a picture")),
        n if n % 100 == 0 => format!("jpegPhoto:: {}\n", B64.encode(photo_jpeg(n, 900, 1200))),
        _ => String::new(),
    };
    format!(
        "dn: uid=p{n},ou=people,{BASE}\nobjectClass: inetOrgPerson\nuid: p{n}\ncn: Person {n}\n\
         givenName: Given{n}\nsn: {family}\nmail: p{n}@example.org\nemployeeNumber: E-{n}\n{photo}\n"
    )
}

/// A JPEG of `width` × `height` pixels, its colours depending on `seed`.
pub fn photo_jpeg(seed: usize, width: u32, height: u32) -> Vec<u8> {
    let shade = u8::try_from(seed % 200).unwrap();
    let picture = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            shade,
            u8::try_from(x % 250).unwrap(),
            u8::try_from(y % 250).unwrap(),
        ])
    });
    let mut out = Vec::new();
    picture
        .write_to(
            &mut std::io::Cursor::new(&mut out),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    out
}

/// Runs openssl with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA and a certificate for 127.0.0.1 it signed, in `dir`: ca.pem, server.pem and
/// server.key.
fn tls_files(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Test directory CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

impl Slapd {
    /// A directory with people 1 to `people` (employee numbers E-1 ...).
    fn start(people: usize) -> Option<Self> {
        Self::start_with(people, false)
    }

    /// A directory that also speaks TLS (ldaps:// on a port of its own, and StartTLS), with a
    /// certificate from a test CA.
    fn start_with(people: usize, tls: bool) -> Option<Self> {
        if !cardwright_testkit::require(
            &[cardwright_testkit::Part::Program(SLAPD, &["-VV"])],
            "install Debian's slapd (scripts/test does)",
        ) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir_all(&db).unwrap();
        let conf = dir.path().join("slapd.conf");
        let tls_conf = if tls {
            tls_files(dir.path());
            format!(
                "TLSCACertificateFile {0}/ca.pem\nTLSCertificateFile {0}/server.pem\n\
                 TLSCertificateKeyFile {0}/server.key\n",
                dir.path().display()
            )
        } else {
            String::new()
        };
        std::fs::write(
            &conf,
            format!(
                "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n\
                 include /etc/ldap/schema/inetorgperson.schema\nmodulepath /usr/lib/ldap\n\
                 moduleload back_mdb\npidfile {}\n{tls_conf}database mdb\nsuffix \"{BASE}\"\n\
                 rootdn \"{ADMIN}\"\nrootpw \"{SECRET}\"\ndirectory {}\nmaxsize 104857600\n",
                dir.path().join("slapd.pid").display(),
                db.display()
            ),
        )
        .unwrap();
        let mut ldif = format!(
            "dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
             dn: ou=people,{BASE}\nobjectClass: organizationalUnit\nou: people\n\n"
        );
        for n in 1..=people {
            ldif.push_str(&person_ldif(n, &format!("Family{n}")));
        }
        let ldif_path = dir.path().join("people.ldif");
        std::fs::write(&ldif_path, ldif).unwrap();
        let added = Command::new(SLAPADD)
            .arg("-f")
            .arg(&conf)
            .arg("-l")
            .arg(&ldif_path)
            .output()
            .expect("slapadd runs");
        assert!(
            added.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&added.stderr)
        );
        let port = free_port();
        let tls_port = free_port();
        let listen = if tls {
            format!("ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/")
        } else {
            format!("ldap://127.0.0.1:{port}/")
        };
        let child = Command::new(SLAPD)
            .arg("-f")
            .arg(&conf)
            .arg("-h")
            .arg(listen)
            .args(["-d", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("slapd starts");
        // Dropping the guard kills and reaps slapd, also when it never answers.
        let tls = tls.then(|| (tls_port, dir.path().join("ca.pem")));
        let slapd = Self {
            child,
            port,
            tls,
            _dir: dir,
        };
        for _ in 0..200 {
            let tls_up = slapd
                .tls
                .as_ref()
                .is_none_or(|(p, _)| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok());
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && tls_up {
                return Some(slapd);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("slapd did not answer on port {port}");
    }

    fn config(&self, password: &str) -> DirectoryConfig {
        DirectoryConfig {
            url: format!("ldap://127.0.0.1:{}", self.port),
            bind_dn: ADMIN.into(),
            bind_password: password.into(),
            base_dn: format!("ou=people,{BASE}"),
            ..DirectoryConfig::default()
        }
    }

    /// Changes the directory as its administrators would.
    async fn change(&self, family_of_7: &str, remove: usize) {
        let (conn, mut ldap) =
            ldap3::LdapConnAsync::new(&format!("ldap://127.0.0.1:{}", self.port))
                .await
                .unwrap();
        ldap3::drive!(conn);
        ldap.simple_bind(ADMIN, SECRET)
            .await
            .unwrap()
            .success()
            .unwrap();
        let sn: std::collections::HashSet<&str> = [family_of_7].into_iter().collect();
        ldap.modify(
            &format!("uid=p7,ou=people,{BASE}"),
            vec![ldap3::Mod::Replace("sn", sn)],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
        ldap.delete(&format!("uid=p{remove},ou=people,{BASE}"))
            .await
            .unwrap()
            .success()
            .unwrap();
        // p200 gets a new photo, p300 loses theirs.
        let new_photo: std::collections::HashSet<Vec<u8>> =
            [photo_jpeg(7, 300, 400)].into_iter().collect();
        ldap.modify(
            &format!("uid=p200,ou=people,{BASE}"),
            vec![ldap3::Mod::Replace(b"jpegPhoto".to_vec(), new_photo)],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
        ldap.modify(
            &format!("uid=p300,ou=people,{BASE}"),
            vec![ldap3::Mod::Delete(
                b"jpegPhoto".to_vec(),
                std::collections::HashSet::<Vec<u8>>::new(),
            )],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
        ldap.unbind().await.unwrap();
    }
}

on_both_databases!(a_directory_of_a_thousand_people_is_synchronised);

/// The directory over TLS: ldaps:// and StartTLS with the test CA given as `ca_file`; without it
/// the directory's certificate is refused and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_is_read_over_tls() {
    if !crate::helpers::have_openssl() {
        return;
    }
    let Some(slapd) = Slapd::start_with(20, true) else {
        return;
    };
    let app = spawn_app(Db::Sqlite).await;
    let (tls_port, ca) = slapd.tls.clone().unwrap();
    let ldaps = DirectoryConfig {
        url: format!("ldaps://127.0.0.1:{tls_port}"),
        ca_file: ca.display().to_string(),
        ..slapd.config(SECRET)
    };
    let first = cardwright::directory::sync(app.ctx(), &ldaps)
        .await
        .expect("a sync over ldaps://");
    assert_eq!(first.created.len(), 20);
    let starttls = DirectoryConfig {
        starttls: true,
        ca_file: ca.display().to_string(),
        ..slapd.config(SECRET)
    };
    let second = cardwright::directory::sync(app.ctx(), &starttls)
        .await
        .expect("a sync over StartTLS");
    assert_eq!(second.unchanged, 20);
    // The test CA is not among the system's roots: the certificate is refused.
    let untrusted = DirectoryConfig {
        ca_file: String::new(),
        ..ldaps
    };
    let err = cardwright::directory::sync(app.ctx(), &untrusted)
        .await
        .expect_err("an untrusted certificate is refused");
    let text = format!("{err:#}");
    assert!(text.contains("connecting to ldaps://"), "{text}");
    assert!(
        text.to_lowercase().contains("certificate") || text.contains("UnknownIssuer"),
        "{text}"
    );
    assert_eq!(count(&app, "active").await, 20, "nothing changed");
}

async fn count(app: &TestApp, state: &str) -> usize {
    let mut total = 0;
    let mut cursor = String::new();
    for _ in 0..100 {
        let page = app
            .get(&format!("/api/v1/persons?limit=500{cursor}"), &app.officer)
            .await;
        let persons = page.body["persons"].as_array().unwrap();
        total += persons.iter().filter(|p| p["state"] == state).count();
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return total,
        }
    }
    total
}

/// The id of the person with `employee_number`.
async fn person_id(app: &TestApp, employee_number: &str) -> String {
    let found = app
        .get(
            &format!("/api/v1/persons?q={employee_number}&limit=500"),
            &app.officer,
        )
        .await;
    found.body["persons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["employee_number"] == employee_number)
        .and_then(|p| p["id"].as_str())
        .unwrap_or_else(|| panic!("{employee_number} not found: {found:?}"))
        .to_owned()
}

/// A person's photo: the status and the bytes.
async fn photo(app: &TestApp, id: &str) -> (StatusCode, Vec<u8>) {
    let res = app
        .client
        .get(format!("{}/api/v1/persons/{id}/photo", app.base))
        .bearer_auth(&app.officer)
        .send()
        .await
        .unwrap();
    (res.status(), res.bytes().await.unwrap().to_vec())
}

/// The photos of the first sync: ten set (re-encoded to at most 600 × 800), E-13's refused with
/// its reason; then a desk operator uploads one for E-400. Returns E-400's id and photo.
async fn first_sync_photos(app: &TestApp, first: &ImportReport) -> (String, Vec<u8>) {
    // Ten people have a photo; E-13's is not a picture: reported, and E-13 comes in without it.
    assert_eq!(first.photos_set.len(), 10, "{:?}", first.photos_set);
    assert_eq!(first.bad_rows.len(), 1, "{:?}", first.bad_rows);
    assert!(
        first.bad_rows[0].message.contains("E-13")
            && first.bad_rows[0]
                .message
                .contains("neither a JPEG nor a PNG"),
        "{:?}",
        first.bad_rows
    );
    let e100 = person_id(app, "E-100").await;
    let (status, jpeg) = photo(app, &e100).await;
    assert_eq!(status, StatusCode::OK);
    let stored = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
        .expect("the stored photo is a JPEG");
    assert_eq!(
        (stored.width(), stored.height()),
        (600, 800),
        "re-encoded to at most 600 × 800"
    );
    let e13 = person_id(app, "E-13").await;
    assert_eq!(photo(app, &e13).await.0, StatusCode::NOT_FOUND);
    // A photo a desk operator uploaded stays when the directory is synced again.
    let e400 = person_id(app, "E-400").await;
    let uploaded = photo_jpeg(1, 60, 80);
    let res = app
        .client
        .put(format!("{}/api/v1/persons/{e400}/photo", app.base))
        .bearer_auth(&app.officer)
        .header("content-type", "image/jpeg")
        .body(uploaded)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let (_, before) = photo(app, &e400).await;
    (e400, before)
}

async fn a_directory_of_a_thousand_people_is_synchronised(db: Db) {
    let Some(slapd) = Slapd::start(1000) else {
        return;
    };
    let app = spawn_app(db).await;
    // Before the first sync: E-5 with another name, and E-9999 (not in the directory) holding
    // a card.
    let renamed = app
        .post(
            "/api/v1/persons",
            &app.officer,
            json!({"employee_number": "E-5", "given_name": "Old", "family_name": "Name"}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::CREATED);
    let leaver = app.person("E-9999").await;
    let card = app.unassigned_card().await;
    app.post(
        &format!("/api/v1/cards/{card}/assign"),
        &app.officer,
        json!({"person": leaver}),
    )
    .await;

    let first = cardwright::directory::sync(app.ctx(), &slapd.config(SECRET))
        .await
        .expect("the first sync");
    assert_eq!(first.created.len(), 999, "{:?}", first.bad_rows);
    assert_eq!(first.updated, ["E-5"]);
    assert_eq!(first.deactivated, ["E-9999"]);
    let (e400, before) = first_sync_photos(&app, &first).await;
    assert_eq!(first.cards.len(), 1);
    assert_eq!(
        first.cards[0].outcome, "locked",
        "on_person_deactivated is lock by default"
    );
    assert_eq!(app.card(&card).await["state"], "locked");
    assert_eq!(count(&app, "active").await, 1000);
    assert_eq!(count(&app, "inactive").await, 1);

    let second = cardwright::directory::sync(app.ctx(), &slapd.config(SECRET))
        .await
        .expect("the second sync");
    assert_eq!(
        (
            second.created.len(),
            second.updated.len(),
            second.deactivated.len(),
            second.unchanged,
            second.photos_set.len(),
            second.photos_removed.len(),
        ),
        (0, 0, 0, 1000, 0, 0),
        "a second sync changes nothing"
    );
    assert_eq!(photo(&app, &e400).await.1, before, "the upload stays");

    slapd.change("Married", 8).await;
    let third = cardwright::directory::sync(app.ctx(), &slapd.config(SECRET))
        .await
        .expect("the third sync");
    assert_eq!(third.updated, ["E-7"]);
    assert_eq!(third.deactivated, ["E-8"]);
    assert_eq!(third.photos_set, ["E-200"]);
    assert_eq!(third.photos_removed, ["E-300"]);
    let e200 = person_id(&app, "E-200").await;
    let (_, jpeg) = photo(&app, &e200).await;
    let changed = image::load_from_memory(&jpeg).unwrap();
    assert_eq!((changed.width(), changed.height()), (300, 400));
    let e300 = person_id(&app, "E-300").await;
    assert_eq!(photo(&app, &e300).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get(&format!("/api/v1/persons/{e300}"), &app.officer)
            .await
            .body["has_photo"],
        false
    );
    let found = app.get("/api/v1/persons?q=married", &app.officer).await;
    assert_eq!(
        found.body["persons"][0]["employee_number"], "E-7",
        "{found:?}"
    );

    let (at, counts) = cardwright_processes::persons_import::last_sync(app.ctx())
        .await
        .unwrap()
        .expect("each sync is an audit event");
    assert_eq!(
        (counts["updated"].as_u64(), counts["deactivated"].as_u64()),
        (Some(1), Some(1)),
        "{counts}"
    );

    a_wrong_password_changes_nothing(&app, &slapd, at).await;
}

/// A wrong bind password is a clear error and changes nothing (the last sync stays `at`).
async fn a_wrong_password_changes_nothing(
    app: &TestApp,
    slapd: &Slapd,
    at: cardwright_domain::Timestamp,
) {
    let err = cardwright::directory::sync(app.ctx(), &slapd.config("wrong"))
        .await
        .expect_err("a wrong password is refused");
    let text = format!("{err:#}");
    assert!(text.contains("binding to the directory"), "{text}");
    assert!(
        text.contains("49") || text.to_lowercase().contains("invalid credentials"),
        "{text}"
    );
    assert_eq!(count(app, "active").await, 999);
    let (still, _) = cardwright_processes::persons_import::last_sync(app.ctx())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(still, at, "a failed sync records nothing");
}
