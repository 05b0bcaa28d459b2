//! The operator web UI against a real server on SQLite: sessions, CSRF, roles and pages over
//! plain HTTP, and the batch order of the operator's guide walked in headless Chromium
//! (`ui/browser.rs`).

#[path = "ui/browser.rs"]
mod browser;

use std::collections::HashMap;
use std::sync::Arc;

use cardwright::app::{self, Running};
use cardwright::config::{Config, StationConfig};
use cardwright_domain::{Operator, Role, Roles};
use cardwright_processes::persons::{self, NewPerson};
use cardwright_processes::temp_cards::{issue_multiple, request};
use cardwright_processes::{auth, Actor, Context, ManualClock};
use chrono::TimeZone;
use reqwest::header::{CONTENT_TYPE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;

pub const PASSWORD: &str = "correct horse battery";

/// A server on a fresh SQLite database with one operator per role and one with every role.
pub struct UiApp {
    pub base: String,
    pub ctx: Context,
    pub clock: Arc<ManualClock>,
    /// Operators by username: pat (production-admin), rita (registration-officer), paula
    /// (policy-admin), sam (service-admin), ada (every role).
    pub operators: HashMap<&'static str, Operator>,
    running: Option<Running>,
    _dir: tempfile::TempDir,
}

impl UiApp {
    pub async fn start(stations: Vec<StationConfig>) -> Self {
        Self::start_with(|config| {
            if !stations.is_empty() {
                config.stations = stations;
            }
        })
        .await
    }

    /// A server with its configuration adjusted by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.path().join("data"),
            station_poll_ms: 20,
            ..Config::default()
        };
        adjust(&mut config);
        let clock = Arc::new(ManualClock::new(
            chrono::Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(),
        ));
        let running = app::start(&config, clock.clone(), false)
            .await
            .expect("server starts");
        let ctx = running.ctx.clone();
        let mut operators = HashMap::new();
        for (name, roles) in [
            ("pat", vec![Role::ProductionAdmin]),
            ("rita", vec![Role::RegistrationOfficer]),
            ("paula", vec![Role::PolicyAdmin]),
            ("sam", vec![Role::ServiceAdmin]),
            ("ada", Role::ALL.to_vec()),
        ] {
            let op = auth::add_operator(
                &ctx,
                &Actor::System("test"),
                name,
                roles.into_iter().collect::<Roles>(),
                PASSWORD,
            )
            .await
            .expect("add operator");
            operators.insert(name, op);
        }
        Self {
            base: format!("http://{}", running.addr),
            ctx,
            clock,
            operators,
            running: Some(running),
            _dir: dir,
        }
    }

    pub fn op(&self, name: &str) -> &Operator {
        &self.operators[name]
    }

    /// Requests `amount` cards of the default template; returns (id, serial) of each.
    pub async fn request_cards(&self, amount: i64) -> Vec<(String, String)> {
        request::request(&self.ctx, self.op("rita"), "Temporary card", amount)
            .await
            .expect("request cards")
            .into_iter()
            .map(|r| (r.card.id.to_string(), r.card.serial.to_string()))
            .collect()
    }

    /// Adds an active person; returns their id.
    pub async fn person(&self, number: &str, given: &str, family: &str) -> String {
        persons::create(
            &self.ctx,
            self.op("rita"),
            NewPerson {
                employee_number: number.into(),
                given_name: given.into(),
                family_name: family.into(),
                email: Some(format!("{}@example.com", given.to_lowercase())),
                state: None,
            },
        )
        .await
        .expect("add person")
        .id
        .to_string()
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }
}

/// An answer as a browser without JavaScript sees it.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: String,
}

impl Answer {
    /// The CSRF token of the page's first form.
    pub fn csrf(&self) -> String {
        let start = self
            .body
            .find(r#"name="csrf" value=""#)
            .expect("a form with a CSRF token")
            + r#"name="csrf" value=""#.len();
        let end = self.body[start..].find('"').expect("end of token");
        self.body[start..start + end].to_owned()
    }
}

/// A cookie-keeping HTTP client that does not follow redirects.
pub struct Browser {
    base: String,
    client: reqwest::Client,
    cookies: HashMap<String, String>,
}

impl Browser {
    pub fn new(app: &UiApp) -> Self {
        Self {
            base: app.base.clone(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookies: HashMap::new(),
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Answer {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let req = if cookie.is_empty() {
            req
        } else {
            req.header("Cookie", cookie.join("; "))
        };
        let res = req.send().await.expect("request sent");
        let set_cookies: Vec<String> = res
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        for line in &set_cookies {
            let (pair, attrs) = line.split_once(';').unwrap_or((line, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || attrs.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Answer {
            status: res.status(),
            location: res
                .headers()
                .get(LOCATION)
                .map(|v| v.to_str().unwrap().to_owned()),
            set_cookies,
            body: res.text().await.expect("body"),
        }
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        let req = self.client.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap());
        self.send(req).await
    }

    /// Posts a multipart form (as a browser sends a form with a file): text fields, then one file.
    pub async fn post_file(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        file: (&str, &str, &[u8]),
    ) -> Answer {
        let boundary = "cardwright-test-boundary-7d1f";
        let mut body = Vec::new();
        for (name, value) in fields {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        let (name, media, bytes) = file;
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; \
                 filename=\"photo\"\r\nContent-Type: {media}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .header(
                CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body);
        self.send(req).await
    }

    /// Logs in through the login form; returns the answer to the posted form.
    pub async fn login(&mut self, username: &str) -> Answer {
        let page = self.get("/login").await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        let csrf = page.csrf();
        let answer = self
            .post(
                "/login",
                &[
                    ("csrf", &csrf),
                    ("username", username),
                    ("password", PASSWORD),
                ],
            )
            .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{answer:?}");
        answer
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_out_browser_is_sent_to_the_login_page() {
    let app = UiApp::start(Vec::new()).await;
    let mut browser = Browser::new(&app);
    let home = browser.get("/").await;
    assert_eq!(home.status, StatusCode::SEE_OTHER);
    assert_eq!(home.location.as_deref(), Some("/login"));
    let deep = browser.get("/batch-orders/issue-multiple?search=1").await;
    assert_eq!(deep.status, StatusCode::SEE_OTHER);
    assert_eq!(
        deep.location.as_deref(),
        Some("/login?next=%2Fbatch-orders%2Fissue-multiple%3Fsearch%3D1")
    );
    let post = browser.post("/cards/request", &[("amount", "1")]).await;
    assert_eq!(post.status, StatusCode::SEE_OTHER);
    assert_eq!(post.location.as_deref(), Some("/login"));

    // After logging in the browser comes back to the page it asked for.
    let page = browser
        .get("/login?next=%2Fbatch-orders%2Fissue-multiple")
        .await;
    assert!(page.body.contains(r#"name="username""#));
    let csrf = page.csrf();
    let wrong = browser
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", "pat"),
                ("password", "wrong one"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("invalid username or password"));
    let answer = browser
        .post(
            "/login",
            &[
                ("csrf", &wrong.csrf()),
                ("username", "pat"),
                ("password", PASSWORD),
                ("next", "/batch-orders/issue-multiple"),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(
        answer.location.as_deref(),
        Some("/batch-orders/issue-multiple")
    );
    let cookie = answer
        .set_cookies
        .iter()
        .find(|c| c.starts_with("cardwright_session="))
        .expect("session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert_eq!(browser.get("/").await.status, StatusCode::OK);

    // Logging out ends the session: the old cookie no longer opens pages.
    let home = browser.get("/").await;
    let session = browser.cookies["cardwright_session"].clone();
    let out = browser.post("/logout", &[("csrf", &home.csrf())]).await;
    assert_eq!(out.location.as_deref(), Some("/login?bye=1"));
    browser.cookies.insert("cardwright_session".into(), session);
    let after = browser.get("/").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(after.location.as_deref(), Some("/login?expired=1"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_without_the_csrf_token_is_refused() {
    let app = UiApp::start(Vec::new()).await;
    let cards = app.request_cards(2).await;
    let mut browser = Browser::new(&app);
    browser.login("pat").await;
    let page = browser.get("/batch-orders/issue-multiple?search=1").await;
    assert!(page.body.contains(&cards[0].1), "{}", page.body);
    let csrf = page.csrf();
    for token in ["", "00", &csrf[..csrf.len() - 2]] {
        let mut form = vec![("cards", cards[0].0.as_str())];
        if !token.is_empty() {
            form.push(("csrf", token));
        }
        let refused = browser.post("/batch-orders", &form).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "token {token:?}");
        assert!(refused.body.contains("security token"));
    }
    let (orders, _) = issue_multiple::list(&app.ctx, None, None, None)
        .await
        .unwrap();
    assert!(orders.is_empty(), "a refused form created an order");
    // Another operator's token does not fit this session either.
    let mut other = Browser::new(&app);
    other.login("ada").await;
    let foreign = other.get("/").await.csrf();
    let refused = browser
        .post(
            "/batch-orders",
            &[("csrf", &foreign), ("cards", &cards[0].0)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // Logging out needs the token too.
    assert_eq!(
        browser.post("/logout", &[]).await.status,
        StatusCode::FORBIDDEN
    );
    // The login form needs its own token.
    let mut fresh = Browser::new(&app);
    let login = fresh
        .post("/login", &[("username", "pat"), ("password", PASSWORD)])
        .await;
    assert_eq!(login.status, StatusCode::FORBIDDEN);

    let made = browser
        .post("/batch-orders", &[("csrf", &csrf), ("cards", &cards[0].0)])
        .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{made:?}");
    let (orders, _) = issue_multiple::list(&app.ctx, None, None, None)
        .await
        .unwrap();
    assert_eq!(orders.len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_officer_neither_sees_nor_reaches_batch_orders() {
    let app = UiApp::start(Vec::new()).await;
    let cards = app.request_cards(1).await;
    let order = issue_multiple::create(
        &app.ctx,
        app.op("pat"),
        "TempCardsBoProcIssueMultiple",
        &[cardwright_domain::CardId::parse(&cards[0].0).unwrap()],
    )
    .await
    .unwrap()
    .record
    .order
    .id;

    let mut producer = Browser::new(&app);
    producer.login("pat").await;
    assert!(producer
        .get("/")
        .await
        .body
        .contains(r#"href="/batch-orders""#));

    let mut officer = Browser::new(&app);
    officer.login("rita").await;
    let home = officer.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(
        !home.body.contains(r#"href="/batch-orders"#),
        "{}",
        home.body
    );
    assert!(!home.body.contains("Issue multiple temporary cards"));
    for path in [
        "/batch-orders".to_owned(),
        "/batch-orders/issue-multiple?search=1".to_owned(),
        format!("/batch-orders/{order}"),
        format!("/batch-orders/{order}/progress"),
        format!("/batch-orders/{order}/cancel"),
    ] {
        let page = officer.get(&path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
        assert!(page.body.contains("Not allowed"), "{path}");
    }
    let csrf = home.csrf();
    for path in [
        "/batch-orders".to_owned(),
        format!("/batch-orders/{order}/next"),
        format!("/batch-orders/{order}/cancel"),
    ] {
        let refused = officer
            .post(&path, &[("csrf", &csrf), ("cards", &cards[0].0)])
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
    }
    let view = issue_multiple::get(&app.ctx, order).await.unwrap();
    assert_eq!(view.record.order.state.as_str(), "open");
    // The officer's own pages are open to them; the admin pages are not.
    assert_eq!(officer.get("/cards/request").await.status, StatusCode::OK);
    assert_eq!(officer.get("/persons").await.status, StatusCode::OK);
    assert_eq!(
        officer.get("/admin/script").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        officer.get("/admin/audit").await.status,
        StatusCode::FORBIDDEN
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_ends() {
    let app = UiApp::start(Vec::new()).await;
    let mut browser = Browser::new(&app);
    browser.login("sam").await;
    for _ in 0..3 {
        app.clock.advance(chrono::Duration::minutes(25));
        assert_eq!(browser.get("/admin/audit").await.status, StatusCode::OK);
    }
    app.clock.advance(chrono::Duration::minutes(32));
    let page = browser.get("/admin/audit").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(
        page.location.as_deref(),
        Some("/login?next=%2Fadmin%2Faudit&expired=1")
    );
    let login = browser.get(page.location.as_deref().unwrap()).await;
    assert!(login.body.contains("Your session has ended"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_script_shows_its_message_at_its_line() {
    let app = UiApp::start(Vec::new()).await;
    let mut browser = Browser::new(&app);
    browser.login("paula").await;
    let editor = browser.get("/admin/script").await;
    assert!(editor.body.contains("validity_days"), "{}", editor.body);
    let source = "pin_length = 6;\npuk_length = 8;\nencode = false +;\nvalidity_days = 14;\n";
    let refused = browser
        .post(
            "/admin/script",
            &[("csrf", &editor.csrf()), ("source", source)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("refused at line 3"),
        "{}",
        refused.body
    );
    assert!(refused
        .body
        .contains(r#"<span class="err" id="error-line" title="Refused here">3</span>"#));
    assert!(refused.body.contains("encode = false +;"));
    let saved = browser
        .post(
            "/admin/script",
            &[("csrf", &editor.csrf()), ("source", "pin_length = 8;\r\n")],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{saved:?}");
    let page = browser.get(saved.location.as_deref().unwrap()).await;
    assert!(page.body.contains("Version 2 saved"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(
    clippy::too_many_lines,
    reason = "one table of every page and what it shows"
)]
async fn every_page_opens_for_an_operator_with_every_role() {
    let app = UiApp::start(Vec::new()).await;
    let cards = app.request_cards(3).await;
    let person = app.person("E100", "Grace", "Hopper").await;
    let order = issue_multiple::create(
        &app.ctx,
        app.op("pat"),
        "TempCardsBoProcIssueMultiple",
        &[cardwright_domain::CardId::parse(&cards[0].0).unwrap()],
    )
    .await
    .unwrap()
    .record
    .order
    .id
    .to_string();
    let template = cardwright_processes::templates::get(&app.ctx, "Temporary card")
        .await
        .unwrap()
        .id
        .to_string();
    let mut browser = Browser::new(&app);
    browser.login("ada").await;
    let card = &cards[1].0;
    let (in_order, serial, waiting) = (&cards[0].1, &cards[1].1, &cards[2].1);
    // Each page with what it must show: the records it lists or the form it offers.
    for (path, shows) in [
        ("/".to_owned(), vec!["Welcome, ada", "Find cards"]),
        (
            "/?serial=TMP&state=requested".to_owned(),
            vec![serial.as_str(), waiting.as_str()],
        ),
        ("/?person=hopper".to_owned(), vec!["Hopper"]),
        ("/batch-orders".to_owned(), vec![order.as_str()]),
        (
            "/batch-orders/issue-multiple?search=1".to_owned(),
            vec![waiting.as_str()],
        ),
        (format!("/batch-orders/{order}"), vec![in_order.as_str()]),
        (
            format!("/batch-orders/{order}/complete"),
            vec!["Complete order"],
        ),
        (format!("/batch-orders/{order}/cancel"), vec!["Cancel"]),
        (
            "/cards/request".to_owned(),
            vec!["Temporary card", "amount"],
        ),
        (format!("/cards/{card}"), vec![serial.as_str(), "requested"]),
        (
            format!("/cards/{card}/abort"),
            vec![serial.as_str(), "csrf"],
        ),
        ("/persons?q=grace".to_owned(), vec!["Hopper", "E100"]),
        (format!("/persons/{person}"), vec!["Grace", "E100"]),
        ("/admin/script".to_owned(), vec!["validity_days", "csrf"]),
        ("/admin/templates".to_owned(), vec!["Temporary card"]),
        ("/admin/templates/new".to_owned(), vec!["front_svg", "csrf"]),
        (
            format!("/admin/templates/{template}"),
            vec!["Temporary card"],
        ),
        (
            "/admin/operators".to_owned(),
            vec!["ada", "rita", "Reset password", "csrf"],
        ),
        (
            "/persons/import".to_owned(),
            vec!["employee_number", "Check (dry run)", "csrf"],
        ),
        (
            "/account/password".to_owned(),
            vec!["Current password", "csrf"],
        ),
        (
            "/admin/webhooks".to_owned(),
            vec!["Subscribe a URL", "card.assigned", "csrf"],
        ),
        ("/stations".to_owned(), vec!["Register a station", "csrf"]),
        (
            "/admin/mail".to_owned(),
            vec!["Reminder before the card", "{{valid_until}}", "csrf"],
        ),
        (
            format!("/admin/audit?card={card}"),
            vec!["TempCardsProcRequest"],
        ),
    ] {
        let page = browser.get(&path).await;
        let ok = page.status == StatusCode::OK
            || (path.ends_with("/complete") && page.status == StatusCode::CONFLICT);
        assert!(ok, "{path}: {page:?}");
        assert!(page.body.contains("</html>"), "{path}");
        for text in shows {
            assert!(
                page.body.contains(text),
                "{path} does not show {text:?}: {}",
                page.body
            );
        }
    }
    let png = browser
        .get(&format!("/cards/{card}/preview?side=back"))
        .await;
    assert_eq!(png.status, StatusCode::OK);
    let search = browser.get("/?person=hopper").await;
    assert!(search.body.contains("Grace Hopper") || search.body.contains("Hopper"));
    // A card process from its confirmation page: abort the requested card.
    let confirm = browser.get(&format!("/cards/{card}/abort")).await;
    let done = browser
        .post(
            &format!("/cards/{card}/abort"),
            &[("csrf", &confirm.csrf())],
        )
        .await;
    assert_eq!(
        done.location.as_deref(),
        Some(format!("/cards/{card}?done=abort").as_str())
    );
    let profile = browser.get(done.location.as_deref().unwrap()).await;
    assert!(profile.body.contains("Abort temporary card: done."));
    assert!(profile.body.contains(r#"id="card-state">aborted<"#));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_is_uploaded_from_the_person_page() {
    let app = UiApp::start(Vec::new()).await;
    let person = app.person("E-77", "Grace", "Hopper").await;
    let mut browser = Browser::new(&app);
    browser.login("rita").await;
    let page = browser.get(&format!("/persons/{person}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("No photo"), "{}", page.body);
    let csrf = page.csrf();
    let mut png = Vec::new();
    image::RgbImage::from_pixel(900, 1200, image::Rgb([10, 200, 10]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    // Without the form's token nothing changes.
    let refused = browser
        .post_file(
            &format!("/persons/{person}/photo"),
            &[("csrf", "00")],
            ("photo", "image/png", &png),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // A file that is no picture is refused with a reason.
    let bad = browser
        .post_file(
            &format!("/persons/{person}/photo"),
            &[("csrf", &csrf)],
            ("photo", "image/png", b"not a picture"),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.body.contains("neither a JPEG nor a PNG"),
        "{}",
        bad.body
    );
    let done = browser
        .post_file(
            &format!("/persons/{person}/photo"),
            &[("csrf", &csrf)],
            ("photo", "image/png", &png),
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{done:?}");
    let page = browser.get(&format!("/persons/{person}")).await;
    assert!(
        page.body.contains(&format!("/persons/{person}/photo?v=")),
        "{}",
        page.body
    );
    let res = reqwest::Client::new()
        .get(format!("{}/persons/{person}/photo", app.base))
        .header(
            "cookie",
            format!(
                "cardwright_session={}",
                browser.cookies["cardwright_session"]
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "image/jpeg");
    let jpeg = image::load_from_memory(&res.bytes().await.unwrap()).unwrap();
    assert_eq!((jpeg.width(), jpeg.height()), (600, 800));
    let removed = browser
        .post(
            &format!("/persons/{person}/photo/remove"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER);
    let page = browser.get(&format!("/persons/{person}")).await;
    assert!(page.body.contains("No photo"));
    app.stop().await;
}

/// Single sign-on configured with password login off (the provider is down): no password form,
/// password logins refused in the UI and the API, and a clear error when the provider cannot be
/// reached or an answer comes back that belongs to no sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_login_can_be_switched_off() {
    let app = UiApp::start_with(|config| {
        let mut roles = std::collections::BTreeMap::new();
        roles.insert(
            "desk".to_owned(),
            cardwright::config::RoleNames::One("registration-officer".into()),
        );
        config.oidc = cardwright::config::OidcConfig {
            issuer: "http://127.0.0.1:9".into(),
            client_id: "cardwright".into(),
            redirect_url: "http://127.0.0.1:8080/login/oidc/callback".into(),
            name: "Corp ID".into(),
            password_login: false,
            timeout_secs: 2,
            roles,
            ..cardwright::config::OidcConfig::default()
        };
    })
    .await;
    let mut browser = Browser::new(&app);
    let page = browser.get("/login").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Sign in with Corp ID"), "{}", page.body);
    assert!(!page.body.contains(r#"id="password""#), "no password form");
    let refused = browser
        .post("/login", &[("username", "rita"), ("password", PASSWORD)])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused.body.contains("Password login is switched off"),
        "{}",
        refused.body
    );
    let api = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", app.base))
        .json(&serde_json::json!({"username": "rita", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::FORBIDDEN);
    // The provider cannot be reached: the login page says so.
    let down = browser.get("/login/oidc").await;
    assert_eq!(down.status, StatusCode::BAD_GATEWAY);
    assert!(
        down.body.contains("Corp ID cannot be reached"),
        "{}",
        down.body
    );
    // An answer that belongs to no sign-in under way is refused.
    let stray = browser.get("/login/oidc/callback?code=abc&state=xyz").await;
    assert_eq!(stray.status, StatusCode::BAD_REQUEST);
    assert!(stray.body.contains("sign in again"), "{}", stray.body);
    app.stop().await;
}

/// An operator creates an API token from their account page; it works as a bearer token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_token_comes_from_the_account_page() {
    let app = UiApp::start(Vec::new()).await;
    let mut browser = Browser::new(&app);
    browser.login("rita").await;
    let page = browser.get("/account/password").await;
    let made = browser
        .post("/account/token", &[("csrf", &page.csrf())])
        .await;
    assert_eq!(made.status, StatusCode::OK, "{made:?}");
    let marker = r#"<pre class="mono" id="token">"#;
    let start = made.body.find(marker).expect("the token") + marker.len();
    let token = &made.body[start..start + 64];
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    let persons = reqwest::Client::new()
        .get(format!("{}/api/v1/persons", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(persons.status(), StatusCode::OK);
    app.stop().await;
}

/// A page that does not exist answers a page, not the API's JSON: within the layout for a
/// logged-in operator, a page of its own otherwise. The API keeps its JSON errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_pages_answer_a_page() {
    let app = UiApp::start(Vec::new()).await;
    let mut browser = Browser::new(&app);
    let anonymous = browser.get("/help").await;
    assert_eq!(anonymous.status, StatusCode::NOT_FOUND);
    assert!(
        anonymous.body.contains("There is no page at /help."),
        "{}",
        anonymous.body
    );
    assert!(anonymous.body.starts_with("<!DOCTYPE html>"));
    browser.login("rita").await;
    let page = browser.get("/help").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(
        page.body.contains("There is no page at /help."),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(r#"id="operator-name""#),
        "within the layout"
    );
    let api = reqwest::get(format!("{}/api/v1/help", app.base))
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        api.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    app.stop().await;
}

/// Requesting cards answers with a redirect to the form, which names the new serials: a reload
/// shows the same page and requests nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requesting_cards_redirects_and_a_reload_requests_nothing() {
    let app = UiApp::start(Vec::new()).await;
    let mut browser = Browser::new(&app);
    browser.login("rita").await;
    let form = browser.get("/cards/request").await;
    let posted = browser
        .post(
            "/cards/request",
            &[
                ("csrf", &form.csrf()),
                ("template", "Temporary card"),
                ("amount", "3"),
            ],
        )
        .await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER, "{posted:?}");
    let location = posted.location.clone().unwrap();
    assert!(
        location.starts_with("/cards/request?requested=3"),
        "{location}"
    );
    for _ in 0..2 {
        let page = browser.get(&location).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(
            page.body.contains("3 cards requested")
                && page.body.contains("TMP-000001")
                && page.body.contains("TMP-000003"),
            "{}",
            page.body
        );
    }
    let all = card_process_count(&app).await;
    assert_eq!(all, 3, "the reloads requested nothing");
    app.stop().await;
}

async fn card_process_count(app: &UiApp) -> usize {
    cardwright_processes::temp_cards::cards::search(
        &app.ctx,
        &cardwright_processes::temp_cards::cards::CardQuery {
            limit: Some(500),
            ..Default::default()
        },
    )
    .await
    .expect("cards")
    .0
    .len()
}

/// Lock and withdraw ask why: without a reason nothing happens, with one the card's history
/// shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdraw_asks_for_a_reason() {
    let app = UiApp::start(Vec::new()).await;
    let cards = app.request_cards(1).await;
    let (card, _) = cards[0].clone();
    // Staged as produced: lock needs an unassigned (or assigned) card.
    let mut tx = app.ctx.store.begin().await.unwrap();
    sqlx::query("UPDATE cards SET state = 'unassigned' WHERE id = $1")
        .bind(&card)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut browser = Browser::new(&app);
    browser.login("rita").await;
    let page = browser.get(&format!("/cards/{card}/lock")).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    for reason in ["lost", "stolen", "damaged", "returned", "other"] {
        assert!(
            page.body.contains(&format!(r#"<option value="{reason}">"#)),
            "{reason}"
        );
    }
    let csrf = page.csrf();
    let refused = browser
        .post(&format!("/cards/{card}/lock"), &[("csrf", &csrf)])
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{refused:?}");
    assert!(refused.body.contains("Choose why"), "{}", refused.body);
    assert_eq!(
        cardwright_processes::temp_cards::cards::search(
            &app.ctx,
            &cardwright_processes::temp_cards::cards::CardQuery {
                state: Some("unassigned".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .0
        .len(),
        1,
        "nothing happened"
    );
    let done = browser
        .post(
            &format!("/cards/{card}/lock"),
            &[
                ("csrf", &csrf),
                ("reason", "lost"),
                ("comment", "on the train"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{done:?}");
    let profile = browser.get(&format!("/cards/{card}")).await;
    assert!(
        profile.body.contains("lost") && profile.body.contains("on the train"),
        "the history shows the reason: {}",
        profile.body
    );
    app.stop().await;
}

/// The enrolment code a page shows, checked for its shape: 32 hex digits, '-', 64 hex digits
/// (the secret and the CA's fingerprint).
fn shown_code(page: &Answer) -> String {
    let marker = r#"<code class="secret" id="enrollment-code">"#;
    let start = page.body.find(marker).expect("an enrolment code") + marker.len();
    let end = page.body[start..].find('<').expect("end of the code");
    let code = page.body[start..start + end].to_owned();
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let (secret, fingerprint) = code.split_once('-').expect("SECRET-FINGERPRINT");
    assert!(hex(secret, 32) && hex(fingerprint, 64), "{code}");
    code
}

/// The state the Stations page shows for station `name`.
fn shown_state(page: &Answer, name: &str) -> String {
    let row = page
        .body
        .find(&format!(r#"<tr id="station-{name}">"#))
        .unwrap_or_else(|| panic!("no row of {name}: {}", page.body));
    let marker = r#"data-field="state">"#;
    let start = row + page.body[row..].find(marker).expect("a state") + marker.len();
    let end = page.body[start..].find('<').expect("end of the state");
    page.body[start..start + end].to_owned()
}

/// Registers a station through the processes, as pat; returns its enrolment code.
async fn register_station(app: &UiApp, name: &str, description: &str) -> String {
    cardwright_processes::stations::register(&app.ctx, app.op("pat"), name, description)
        .await
        .expect("register a station")
        .code
}

/// Enrols an agent with `code` as `cardwright station enroll` does; returns the station's name.
async fn enroll_station(app: &UiApp, code: &str) -> Result<String, String> {
    let (_, csr) = cardwright_pki::tls::key_and_request("cardwright station").unwrap();
    cardwright_processes::stations::enroll(&app.ctx, code, &csr)
        .await
        .map(|enrolled| enrolled.station)
        .map_err(|e| e.to_string())
}

/// A production-admin registers a station with the form: the answer shows its enrolment code
/// once, with the command to type at the desk, and the code enrols the station's agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_a_station_shows_its_enrolment_code_once() {
    let app = UiApp::start(Vec::new()).await;
    let mut browser = Browser::new(&app);
    browser.login("pat").await;
    let page = browser.get("/stations").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(page.body.contains(r#"id="no-stations""#), "{}", page.body);
    assert!(page.body.contains("Register a station"));
    assert!(
        page.body.contains(r#"id="local-stations""#),
        "{}",
        page.body
    );
    let csrf = page.csrf();
    // A refused name is shown on the page, the form keeps what was typed.
    let refused = browser
        .post(
            "/stations",
            &[
                ("csrf", &csrf),
                ("name", "desk 7"),
                ("description", "Lobby"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{refused:?}");
    assert!(
        refused.body.contains("use 1 to 64 letters"),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains(r#"value="Lobby""#),
        "{}",
        refused.body
    );

    let made = browser
        .post(
            "/stations",
            &[
                ("csrf", &csrf),
                ("name", "desk-7"),
                ("description", "Lobby"),
            ],
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
    let code = shown_code(&made);
    let host = app.base.trim_start_matches("http://");
    let command = format!("cardwright station enroll --server https://{host} --code {code} --dir ");
    assert!(made.body.contains(&command), "{}", made.body);
    assert!(made.body.contains("will not show it again"));
    assert!(made.body.contains(r#"href="/stations""#));
    assert!(
        made.body.contains("2026-03-02 09:15 UTC"),
        "it expires in 15 minutes"
    );
    assert!(
        made.body.contains(r#"id="plain-http""#),
        "the test server answers plain HTTP"
    );
    let (_, fingerprint) = code.split_once('-').unwrap();
    let colons = fingerprint
        .as_bytes()
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).unwrap().to_uppercase())
        .collect::<Vec<_>>()
        .join(":");
    assert!(
        made.body.contains(&colons),
        "the CA fingerprint as openssl prints it"
    );

    // The list shows the station waiting for its agent, and never the code.
    let list = browser.get("/stations").await;
    assert_eq!(shown_state(&list, "desk-7"), "enrolling");
    assert!(list.body.contains("Lobby"));
    assert!(!list.body.contains(&code), "the code is shown once");
    let again = browser
        .post("/stations", &[("csrf", &csrf), ("name", "desk-7")])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");
    assert!(again.body.contains("exists already"), "{}", again.body);

    assert_eq!(enroll_station(&app, &code).await.as_deref(), Ok("desk-7"));
    assert!(
        enroll_station(&app, &code).await.is_err(),
        "a code works once"
    );
    let list = browser.get("/stations").await;
    assert_eq!(shown_state(&list, "desk-7"), "offline");
    let until = (app.ctx.now() + chrono::Duration::days(365))
        .format("%Y-%m-%d")
        .to_string();
    assert!(
        list.body.contains(&format!("certificate until {until}")),
        "when its certificate ends: {}",
        list.body
    );
    app.stop().await;
}

/// Disable, Enable and New enrolment code on a station's row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_is_disabled_enabled_and_given_a_new_code() {
    let app = UiApp::start(Vec::new()).await;
    let code = register_station(&app, "desk-8", "Back office").await;
    enroll_station(&app, &code).await.unwrap();
    let mut browser = Browser::new(&app);
    browser.login("pat").await;
    let page = browser.get("/stations").await;
    assert_eq!(shown_state(&page, "desk-8"), "offline");
    let csrf = page.csrf();
    // Without the form's token nothing changes.
    let refused = browser.post("/stations/desk-8/disable", &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        shown_state(&browser.get("/stations").await, "desk-8"),
        "offline"
    );

    let disabled = browser
        .post("/stations/desk-8/disable", &[("csrf", &csrf)])
        .await;
    assert_eq!(disabled.status, StatusCode::SEE_OTHER, "{disabled:?}");
    let location = disabled.location.unwrap();
    let page = browser.get(&location).await;
    assert!(
        page.body.contains("Station desk-8 is disabled now."),
        "{}",
        page.body
    );
    assert_eq!(shown_state(&page, "desk-8"), "disabled");
    assert!(page.body.contains(r#"id="enable-desk-8""#));

    let enabled = browser
        .post("/stations/desk-8/enable", &[("csrf", &csrf)])
        .await;
    assert_eq!(enabled.status, StatusCode::SEE_OTHER, "{enabled:?}");
    let page = browser.get(&enabled.location.unwrap()).await;
    assert_eq!(shown_state(&page, "desk-8"), "offline");
    assert!(page.body.contains(r#"id="disable-desk-8""#));

    // A new code: the station waits for its agent again, and the code enrols it.
    let renewed = browser
        .post("/stations/desk-8/enrollment", &[("csrf", &csrf)])
        .await;
    assert_eq!(renewed.status, StatusCode::OK, "{renewed:?}");
    let new_code = shown_code(&renewed);
    assert_ne!(new_code, code);
    assert!(renewed.body.contains("given a new enrolment code"));
    assert_eq!(
        shown_state(&browser.get("/stations").await, "desk-8"),
        "enrolling"
    );
    assert_eq!(
        enroll_station(&app, &new_code).await.as_deref(),
        Ok("desk-8")
    );
    assert_eq!(
        shown_state(&browser.get("/stations").await, "desk-8"),
        "offline"
    );

    // A station that does not exist: the list says so.
    let missing = browser
        .post("/stations/nowhere/disable", &[("csrf", &csrf)])
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{missing:?}");
    assert!(missing.body.contains("no station"), "{}", missing.body);
    assert!(
        missing.body.contains(r#"id="stations""#),
        "shown on the list"
    );
    app.stop().await;
}

/// A registration officer sees the stations but neither the register form nor the buttons, and
/// a change they post is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_officer_sees_the_stations_but_changes_none() {
    let app = UiApp::start(Vec::new()).await;
    register_station(&app, "desk-5", "Front desk").await;
    let mut officer = Browser::new(&app);
    officer.login("rita").await;
    let home = officer.get("/").await;
    assert!(home.body.contains(r#"href="/stations""#), "{}", home.body);
    let page = officer.get("/stations").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert_eq!(shown_state(&page, "desk-5"), "enrolling");
    assert!(page.body.contains("Front desk"));
    assert!(!page.body.contains(r#"id="register""#), "no register form");
    assert!(!page.body.contains("/stations/desk-5/"), "no buttons");
    let csrf = page.csrf();
    for path in [
        "/stations",
        "/stations/desk-5/disable",
        "/stations/desk-5/enrollment",
    ] {
        let refused = officer
            .post(path, &[("csrf", &csrf), ("name", "desk-6")])
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
        assert!(refused.body.contains("production-admin"), "{path}");
    }
    let all = cardwright_processes::stations::list(&app.ctx, app.op("rita"))
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "nothing registered");
    assert_eq!(all[0].state.as_str(), "enrolling", "nothing changed");
    app.stop().await;
}

/// Operators with neither production-admin nor registration-officer do not see the Stations
/// page in their menu and are refused it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stations_page_is_refused_to_other_roles() {
    let app = UiApp::start(Vec::new()).await;
    for name in ["paula", "sam"] {
        let mut browser = Browser::new(&app);
        browser.login(name).await;
        let home = browser.get("/").await;
        assert!(!home.body.contains(r#"href="/stations""#), "{name}");
        let page = browser.get("/stations").await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{name}");
        assert!(page.body.contains("Not allowed"), "{name}");
        let refused = browser
            .post("/stations", &[("csrf", &home.csrf()), ("name", "desk-9")])
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{name}");
    }
    let all = cardwright_processes::stations::list(&app.ctx, app.op("pat"))
        .await
        .unwrap();
    assert!(all.is_empty());
    app.stop().await;
}

/// An open batch order of the first of `cards`; returns its id.
async fn open_order(app: &UiApp, card: &str) -> cardwright_domain::BatchOrderId {
    issue_multiple::create(
        &app.ctx,
        app.op("pat"),
        "TempCardsBoProcIssueMultiple",
        &[cardwright_domain::CardId::parse(card).unwrap()],
    )
    .await
    .unwrap()
    .record
    .order
    .id
}

/// Next offers every station (the server's own, the stations at the desk) and names the chosen
/// one on the order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_names_the_chosen_station_on_the_order() {
    let app = UiApp::start(Vec::new()).await;
    register_station(&app, "desk-3", "").await;
    register_station(&app, "desk-4", "").await;
    cardwright_processes::stations::set_disabled(&app.ctx, app.op("pat"), "desk-4", true)
        .await
        .unwrap();
    let cards = app.request_cards(1).await;
    let order = open_order(&app, &cards[0].0).await;
    let mut browser = Browser::new(&app);
    browser.login("pat").await;
    let path = format!("/batch-orders/{order}");
    let page = browser.get(&path).await;
    for option in [
        r#"<option value="">Any station</option>"#,
        r#"<option value="local">local (this server)</option>"#,
        r#"<option value="desk-3">desk-3 (enrolling)</option>"#,
        r#"<option value="desk-4" disabled>desk-4 (disabled)</option>"#,
    ] {
        assert!(page.body.contains(option), "{option}: {}", page.body);
    }
    assert!(
        !page.body.contains(r#"id="order-station""#),
        "none named yet"
    );
    let csrf = page.csrf();
    let refused = browser
        .post(
            &format!("{path}/next"),
            &[("csrf", &csrf), ("station", "nowhere")],
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{refused:?}"
    );
    assert!(refused.body.contains("no station"), "{}", refused.body);
    let view = issue_multiple::get(&app.ctx, order).await.unwrap();
    assert_eq!(view.record.order.state.as_str(), "open");

    let next = browser
        .post(
            &format!("{path}/next"),
            &[("csrf", &csrf), ("station", "desk-3")],
        )
        .await;
    assert_eq!(next.status, StatusCode::SEE_OTHER, "{next:?}");
    let view = issue_multiple::get(&app.ctx, order).await.unwrap();
    assert_eq!(view.record.station.as_deref(), Some("desk-3"));
    let page = browser.get(&path).await;
    assert!(
        page.body.contains(r#"id="order-station">desk-3<"#),
        "{}",
        page.body
    );
    app.stop().await;
}

/// An order named to the server's own station is produced there, and its attempts name it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attempts_of_an_order_name_their_station() {
    let app = UiApp::start(Vec::new()).await;
    let cards = app.request_cards(1).await;
    let order = open_order(&app, &cards[0].0).await;
    let mut browser = Browser::new(&app);
    browser.login("pat").await;
    let path = format!("/batch-orders/{order}");
    let page = browser.get(&path).await;
    let next = browser
        .post(
            &format!("{path}/next"),
            &[("csrf", &page.csrf()), ("station", "local")],
        )
        .await;
    assert_eq!(next.status, StatusCode::SEE_OTHER, "{next:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let view = issue_multiple::get(&app.ctx, order).await.unwrap();
        if view.record.order.state.as_str() == "produced" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the order was not produced"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let page = browser.get(&path).await;
    assert!(page.body.contains("<th>Station</th>"), "{}", page.body);
    assert!(
        page.body.contains("<td>local</td>"),
        "the attempt names its station: {}",
        page.body
    );
    assert!(page.body.contains(r#"id="order-station">local<"#));
    app.stop().await;
}

/// A webhook receiver on a loopback port that answers 410 Gone while `gone` is set and 204
/// otherwise, counting the deliveries it took; returns its address.
async fn gone_receiver(
    gone: Arc<std::sync::atomic::AtomicBool>,
    taken: Arc<std::sync::atomic::AtomicU64>,
) -> std::net::SocketAddr {
    use std::sync::atomic::Ordering;
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let (gone, taken) = (gone.clone(), taken.clone());
            async move {
                if gone.load(Ordering::SeqCst) {
                    axum::http::StatusCode::GONE
                } else {
                    taken.fetch_add(1, Ordering::SeqCst);
                    axum::http::StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

/// A subscription whose receiver answered 410 Gone is shown disabled on the Webhooks page, with
/// why, and its Enable button sends what waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_whose_receiver_is_gone_is_enabled_again_on_the_webhooks_page() {
    use cardwright_processes::notify::webhooks;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let gone = Arc::new(AtomicBool::new(true));
    let taken = Arc::new(AtomicU64::new(0));
    let addr = gone_receiver(gone.clone(), taken.clone()).await;
    let app = UiApp::start_with(|config| {
        config.webhooks.allowed_urls = vec![format!("http://{addr}/")];
    })
    .await;
    let (webhook, _) = webhooks::subscribe(
        &app.ctx,
        app.op("paula"),
        &format!("http://{addr}/hook"),
        &["card.requested".to_owned()],
    )
    .await
    .unwrap();
    let id = webhook.id;
    app.request_cards(1).await;
    for _ in 0..400 {
        let view = webhooks::get(&app.ctx, app.op("paula"), id).await.unwrap();
        if !view.webhook.enabled() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let mut browser = Browser::new(&app);
    browser.login("paula").await;
    let page = browser.get("/admin/webhooks").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(
        page.body.contains(r#"data-field="state">disabled<"#)
            && page.body.contains("because the receiver answered 410 Gone")
            && page.body.contains(&format!(r#"id="enable-{id}""#)),
        "{}",
        page.body
    );
    let csrf = page.csrf();
    gone.store(false, Ordering::SeqCst);
    let enabled = browser
        .post(&format!("/admin/webhooks/{id}/enable"), &[("csrf", &csrf)])
        .await;
    assert_eq!(enabled.status, StatusCode::SEE_OTHER, "{enabled:?}");
    let page = browser.get(&enabled.location.unwrap()).await;
    assert!(page.body.contains("is enabled again"), "{}", page.body);
    assert!(page.body.contains(r#"data-field="state">enabled<"#));
    assert!(!page.body.contains(&format!(r#"id="enable-{id}""#)));
    for _ in 0..400 {
        if taken.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(
        taken.load(Ordering::SeqCst),
        1,
        "the delivery that waited went out"
    );
    app.stop().await;
}

/// A heavy layout: a path of 600 segments drawn 100 times, so that previews of it take a
/// moment to render.
fn heavy_layout() -> String {
    use std::fmt::Write as _;
    let mut copies = String::new();
    for i in 0..100 {
        let _ = write!(
            copies,
            r##"<use href="#p" x="{}" y="{}"/>"##,
            i % 10 * 8,
            i / 10 * 5
        );
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="856" height="540" viewBox="0 0 856 540"><defs><path id="p" d="M10 10{}" fill="none" stroke="#1d2b45" stroke-width="0.5"/></defs>{copies}<text x="40" y="500" font-size="40">{{{{serial}}}}</text></svg>"##,
        "h1v1".repeat(300)
    )
}

/// The UI's card previews are limited as the API's: of eight at once, those over the
/// operator's limit get the error page with 429, the message and `Retry-After`, and the page's
/// script asks again for a picture so refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_over_an_operators_limit_say_when_to_ask_again() {
    use cardwright_processes::templates::{self, TemplateInput};
    let app = UiApp::start(Vec::new()).await;
    templates::create(
        &app.ctx,
        app.op("paula"),
        &TemplateInput {
            name: "Heavy".into(),
            serial_prefix: "HVY-".into(),
            front_svg: Some(heavy_layout()),
            ..TemplateInput::default()
        },
    )
    .await
    .unwrap();
    let cards = request::request(&app.ctx, app.op("rita"), "Heavy", 8)
        .await
        .unwrap();
    let mut browser = Browser::new(&app);
    browser.login("rita").await;
    let cookie: Vec<String> = browser
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let cookie = cookie.join("; ");
    let mut burst = tokio::task::JoinSet::new();
    for card in &cards {
        let request = browser
            .client
            .get(format!(
                "{}/cards/{}/preview?side=front",
                app.base, card.card.id
            ))
            .header("Cookie", cookie.clone());
        burst.spawn(async move {
            let res = request.send().await.unwrap();
            let status = res.status();
            let retry_after = res
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, retry_after, res.text().await.unwrap_or_default())
        });
    }
    let answers = burst.join_all().await;
    let refused: Vec<_> = answers
        .iter()
        .filter(|(status, _, _)| *status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert!(!refused.is_empty(), "eight at once are over the limit");
    for (_, retry_after, body) in refused {
        assert_eq!(retry_after.as_deref(), Some("5"));
        assert!(
            body.contains("as many as one operator may have at once; try again in 5 s"),
            "{body}"
        );
    }
    // Previews of other tests in this process may fill the preview lane meanwhile (503).
    assert!(answers.iter().all(|(status, _, _)| [
        StatusCode::OK,
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::SERVICE_UNAVAILABLE
    ]
    .contains(status)));
    let script = browser.get("/static/app.js").await;
    assert!(
        script.body.contains(r#"img[src*="/preview?"]"#),
        "the page's script asks again for refused previews"
    );
    app.stop().await;
}
