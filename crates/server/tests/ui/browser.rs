//! The UI in headless Chromium over WebDriver. The batch order of the operator's guide: log
//! in, Batch orders, Issue multiple temporary cards, Search, tick cards, Next, watch the
//! simulated printer fail every third card, Repeat production, Complete order; then a
//! registration officer assigns one of the cards to a person from its profile. And the
//! administration pages, with a refused option script. Every step leaves a screenshot under
//! `target/ui-screenshots/`; with `UPDATE_DOCS_IMAGES` set, the batch order's
//! results also go to `docs/images/batch-order-results.png`.
//!
//! The browser is driven through the chromedriver at `CHROMEDRIVER_URL`, or through one each
//! test starts on a free loopback port. Without chromedriver or Chromium the tests are
//! skipped, except under CI, where they fail.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use cardwright::config::{OidcConfig, PrinterConfig, RoleNames, StationConfig};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

use cardwright_domain::Role;

use super::{UiApp, PASSWORD};

/// The longest any single wait of the walk lasts.
const WAIT: Duration = Duration::from_secs(20);

/// How to get the browser and its driver.
const BROWSER: &str =
    "install Debian's chromium and chromium-driver (scripts/test does and starts chromedriver)";

/// Gives up on the browser test: a failure with CI=true, a recorded skip elsewhere.
fn unavailable(why: &str) {
    cardwright_testkit::skip(why, BROWSER);
}

/// Whether the browser and `parts` (the driver) answer; else the test gives up.
fn require_browser(parts: &[cardwright_testkit::Part<'_>]) -> bool {
    let chromium = find_program(&["chromium", "/usr/bin/chromium"])
        .unwrap_or_else(|| PathBuf::from("chromium"));
    let chromium = chromium.to_str().unwrap_or("chromium").to_owned();
    let mut all = vec![cardwright_testkit::Part::Program(&chromium, &["--version"])];
    all.extend_from_slice(parts);
    cardwright_testkit::require(&all, BROWSER)
}

/// A chromedriver this test started, ended when dropped.
struct Driver {
    url: String,
    child: Option<Child>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The first executable found among `candidates` (names are looked up on PATH).
fn find_program(candidates: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    candidates.iter().find_map(|c| {
        let given = PathBuf::from(c);
        if given.is_absolute() {
            return given.is_file().then_some(given);
        }
        std::env::split_paths(&path)
            .map(|dir| dir.join(c))
            .find(|p| p.is_file())
    })
}

async fn driver_ready(url: &str) -> bool {
    let Ok(res) = reqwest::get(format!("{url}/status")).await else {
        return false;
    };
    let Ok(body) = res.json::<serde_json::Value>().await else {
        return false;
    };
    body["value"]["ready"].as_bool().unwrap_or(false)
}

/// The chromedriver to use: `CHROMEDRIVER_URL`, or a new one on a free loopback port.
async fn driver() -> Option<Driver> {
    if let Ok(url) = std::env::var("CHROMEDRIVER_URL") {
        if !url.is_empty() {
            let url = url.trim_end_matches('/').to_owned();
            let deadline = Instant::now() + WAIT;
            while !driver_ready(&url).await && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let status = format!("{url}/status");
            if !require_browser(&[cardwright_testkit::Part::Http(&status)]) {
                return None;
            }
            return Some(Driver { url, child: None });
        }
    }
    let program = find_program(&["chromedriver", "/usr/bin/chromedriver"])
        .unwrap_or_else(|| PathBuf::from("chromedriver"));
    if !require_browser(&[cardwright_testkit::Part::Program(
        program.to_str().unwrap_or("chromedriver"),
        &["--version"],
    )]) {
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(&program)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        url: format!("http://127.0.0.1:{port}"),
        child: Some(child),
    };
    let deadline = Instant::now() + WAIT;
    while !driver_ready(&driver.url).await {
        assert!(Instant::now() < deadline, "chromedriver did not get ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some(driver)
}

/// A browser for one test: headless Chromium with a fresh profile, through its chromedriver.
struct Session {
    client: Client,
    driver: Driver,
    _profile: tempfile::TempDir,
}

impl Session {
    /// Starts Chromium, or gives up (see [`unavailable`]) when it or chromedriver is missing.
    async fn open() -> Option<Self> {
        let binary =
            std::env::var("CHROMIUM_BINARY").unwrap_or_else(|_| "/usr/bin/chromium".into());
        if !PathBuf::from(&binary).is_file() {
            unavailable(&format!(
                "no Chromium at {binary} (Debian: apt-get install chromium)"
            ));
            return None;
        }
        let driver = driver().await?;
        let profile = tempfile::tempdir().expect("browser profile");
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1280,900",
            // Loopback only: any other host name fails at once instead of waiting on the network.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--force-device-scale-factor=1",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": binary, "args": args }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .expect("Chromium starts through chromedriver");
        Some(Self {
            client,
            driver,
            _profile: profile,
        })
    }

    /// Closes the browser and ends the chromedriver this test started.
    async fn end(self) {
        let _ = self.client.close().await;
        drop(self.driver);
    }
}

/// Where screenshots go: `target/ui-screenshots` of the workspace (or of CARGO_TARGET_DIR).
fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    target.join("ui-screenshots")
}

/// One walk through the UI in one browser.
struct Walk<'a> {
    client: &'a Client,
    base: String,
    shots: PathBuf,
}

impl<'a> Walk<'a> {
    fn new(session: &'a Session, app: &UiApp) -> Self {
        let shots = screenshot_dir();
        std::fs::create_dir_all(&shots).expect("screenshot folder");
        Self {
            client: &session.client,
            base: app.base.clone(),
            shots,
        }
    }

    async fn shot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    async fn open(&self, path: &str) -> anyhow::Result<()> {
        self.client.goto(&format!("{}{path}", self.base)).await?;
        Ok(())
    }

    async fn click(&self, css: &str) -> anyhow::Result<()> {
        self.wait_for(css).await?.click().await?;
        Ok(())
    }

    async fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let field = self.wait_for(css).await?;
        field.clear().await?;
        field.send_keys(text).await?;
        Ok(())
    }

    async fn wait_for(&self, css: &str) -> anyhow::Result<fantoccini::elements::Element> {
        self.client
            .wait()
            .at_most(WAIT)
            .every(Duration::from_millis(100))
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("waiting for {css}"))
    }

    async fn text(&self, css: &str) -> anyhow::Result<String> {
        Ok(self.wait_for(css).await?.text().await?)
    }

    async fn path(&self) -> anyhow::Result<String> {
        Ok(self.client.current_url().await?.path().to_owned())
    }

    /// Waits until the text of `css` satisfies `done` (bounded by [`WAIT`]).
    async fn until_text(&self, css: &str, done: impl Fn(&str) -> bool) -> anyhow::Result<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                if let Ok(text) = el.text().await {
                    if done(&text) {
                        return Ok(text);
                    }
                }
            }
            ensure!(
                Instant::now() < deadline,
                "{css} never showed what was expected"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn log_in(&self, username: &str) -> anyhow::Result<()> {
        self.open("/login").await?;
        self.fill("#username", username).await?;
        self.fill("#password", PASSWORD).await?;
        self.click("#login").await?;
        self.until_text("#operator-name", |t| t == username).await?;
        Ok(())
    }

    /// Waits until every image matched by `css` has loaded (bounded by [`WAIT`]).
    async fn images_loaded(&self, css: &str) -> anyhow::Result<()> {
        let script = format!(
            "const all = Array.from(document.querySelectorAll('{css}')); \
             return all.length > 0 && all.every(i => i.complete && i.naturalWidth > 0);"
        );
        let deadline = Instant::now() + WAIT;
        while self.client.execute(&script, Vec::new()).await? != serde_json::Value::Bool(true) {
            ensure!(Instant::now() < deadline, "the images {css} never loaded");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// What the order page shows now: its state, how many items are done and how many failed;
    /// `None` while the page reloads.
    async fn production_now(&self) -> Option<(String, String, u64)> {
        let script = "const state = document.getElementById('order-state'); \
            const done = document.querySelector('[data-count=\"done\"]'); \
            if (!state || !done) { return null; } \
            const failed = Array.from(document.querySelectorAll('#items [data-field=\"status\"]')) \
                .filter(e => e.textContent === 'failed').length; \
            return [state.textContent, done.textContent, failed];";
        let value = self.client.execute(script, Vec::new()).await.ok()?;
        let parts = value.as_array()?;
        Some((
            parts.first()?.as_str()?.to_owned(),
            parts.get(1)?.as_str()?.to_owned(),
            parts.get(2)?.as_u64()?,
        ))
    }

    /// Count of items whose status badge reads `status`.
    async fn items_with(&self, status: &str) -> anyhow::Result<usize> {
        let badges = self
            .client
            .find_all(Locator::Css("#items [data-field=\"status\"]"))
            .await?;
        let mut n = 0;
        for badge in badges {
            if badge.text().await? == status {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// The production administrator's part of the seed walk over `cards`, the requested cards (id,
/// serial): all but the last two are issued. Returns the results page's screenshot.
async fn issue(w: &Walk<'_>, cards: &[(String, String)]) -> anyhow::Result<PathBuf> {
    // Log in as the production administrator.
    w.open("/login").await?;
    w.wait_for("#username").await?;
    w.shot("01-login").await?;
    w.log_in("pat").await?;
    w.shot("02-home").await?;

    // Batch orders page → Issue multiple temporary cards → Search.
    w.click("nav a[href=\"/batch-orders\"]").await?;
    w.wait_for("#issue-multiple").await?;
    w.shot("03-batch-orders").await?;
    w.click("#issue-multiple").await?;
    w.click("#search").await?;
    w.wait_for("#candidates").await?;
    let listed = w
        .client
        .find_all(Locator::Css("#candidates tbody tr"))
        .await?;
    ensure!(
        listed.len() == cards.len(),
        "search listed {} cards",
        listed.len()
    );

    // Tick the cards: select all, then leave the last two out.
    w.click("#select-all").await?;
    for (_, serial) in &cards[cards.len() - 2..] {
        w.click(&format!("#pick-{serial}")).await?;
    }
    let chosen = &cards[..cards.len() - 2];
    for (_, serial) in chosen {
        let ticked = w
            .wait_for(&format!("#pick-{serial}"))
            .await?
            .is_selected()
            .await?;
        ensure!(ticked, "{serial} is not ticked");
    }
    w.shot("04-search-ticked").await?;

    // "Issue multiple temporary cards" shows the chosen list.
    w.click("#issue").await?;
    w.wait_for("#chosen").await?;
    let rows = w.client.find_all(Locator::Css("#chosen tbody tr")).await?;
    ensure!(rows.len() == chosen.len(), "{} cards chosen", rows.len());
    w.shot("05-chosen").await?;
    let order_path = w.path().await?;

    // Next: production runs; the page follows it live and fails come from the printer.
    w.click("#next").await?;
    w.wait_for("#progress-bar").await?;
    let total = chosen.len().to_string();
    let mut saw_live = false;
    let mut shot_live = false;
    let deadline = Instant::now() + WAIT;
    loop {
        ensure!(Instant::now() < deadline, "production never ended");
        match w.production_now().await {
            Some((state, done, failed)) if state == "producing" && done != "0" && done != total => {
                saw_live = true;
                if failed > 0 && !shot_live {
                    w.shot("06-production-live").await?;
                    shot_live = true;
                }
            }
            Some((state, ..)) if state != "producing" => break,
            Some(_) | None => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(saw_live, "the progress bar never moved while producing");
    w.until_text("#order-state", |s| s == "produced").await?;
    w.wait_for("#complete").await?;
    ensure!(w.items_with("failed").await? == 2, "two cards fail");
    ensure!(w.items_with("produced").await? == chosen.len() - 2);
    let problems = w.client.find_all(Locator::Css("#items td.problem")).await?;
    let mut ribbon = 0;
    for p in problems {
        if p.text().await?.contains("ribbon out") {
            ribbon += 1;
        }
    }
    ensure!(ribbon == 2, "the printer's reason is shown: {ribbon}");
    w.images_loaded("img.thumb").await?;
    w.client.set_window_size(1280, 1200).await?;
    let results = w.shot("07-results").await?;
    w.client.set_window_size(1280, 900).await?;

    // Repeat production of the failed cards (ticked already), then Complete order.
    w.click("#repeat").await?;
    w.until_text("#order-state", |s| s == "producing").await?;
    w.until_text("#order-state", |s| s == "produced").await?;
    w.wait_for("#complete").await?;
    ensure!(
        w.items_with("failed").await? == 0,
        "the repeated cards are produced"
    );
    w.shot("08-repeated").await?;
    w.click("#complete").await?;
    w.wait_for("#confirm").await?;
    w.shot("09-complete-confirm").await?;
    w.click("#confirm").await?;
    w.until_text("#order-state", |s| s == "completed").await?;
    ensure!(w.path().await? == order_path, "back on the order");
    w.shot("10-completed").await?;

    Ok(results)
}

/// A registration officer finds `card` (id, serial), produced and unassigned, and assigns it
/// to Ada Lovelace from its profile.
async fn assign(w: &Walk<'_>, card: &(String, String)) -> anyhow::Result<()> {
    w.click("#logout").await?;
    w.wait_for("#login").await?;
    w.log_in("rita").await?;
    let menu = w.text("nav").await?;
    ensure!(!menu.contains("Batch orders"), "officer menu: {menu}");
    let (card_id, serial) = card;
    w.fill("#serial", serial).await?;
    w.click("#find-cards").await?;
    w.click(&format!("a[href=\"/cards/{card_id}\"]")).await?;
    w.until_text("#card-state", |s| s == "unassigned").await?;
    w.images_loaded("img.card-image").await?;
    w.shot("11-card-profile").await?;
    w.click("#process-assign").await?;
    w.fill("#person-query", "Lovelace").await?;
    w.click("#person-search").await?;
    w.wait_for("input[name=\"person\"]:checked").await?;
    w.shot("12-assign").await?;
    w.click("#confirm").await?;
    w.until_text("#card-state", |s| s == "assigned").await?;
    let holder = w.text("#card-holder").await?;
    ensure!(holder.contains("Ada Lovelace"), "holder: {holder}");
    w.shot("13-assigned").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_order_of_the_guide_in_a_browser() {
    let Some(session) = Session::open().await else {
        return;
    };
    let station = StationConfig {
        name: "desk-1".into(),
        printer: PrinterConfig::Simulated {
            fail_every: 3,
            delay_ms: 600,
            dir: None,
        },
        ..StationConfig::local()
    };
    let app = UiApp::start(vec![station]).await;
    let cards = app.request_cards(8).await;
    app.person("E2001", "Ada", "Lovelace").await;
    let w = Walk::new(&session, &app);
    let mut outcome = issue(&w, &cards).await;
    if outcome.is_ok() {
        if let Err(e) = assign(&w, &cards[0]).await {
            outcome = Err(e);
        }
    }
    if outcome.is_err() {
        let _ = w.shot("failure").await;
    }
    session.end().await;
    app.stop().await;
    let results = outcome.expect("the walk through the batch order");
    // The README's screenshot is refreshed on request only, so test runs leave the tree clean.
    if std::env::var_os("UPDATE_DOCS_IMAGES").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/images");
        std::fs::create_dir_all(&docs).expect("docs/images");
        std::fs::copy(&results, docs.join("batch-order-results.png")).expect("copy the results");
    }
}

/// The administration pages and the other forms, as an operator with every role.
async fn admin_walk(w: &Walk<'_>) -> anyhow::Result<()> {
    w.log_in("ada").await?;
    w.shot("admin-01-home").await?;

    // A refused option script: the message stands at the line it names.
    w.click("nav a[href=\"/admin/script\"]").await?;
    w.fill(
        "#source",
        "pin_length = 6;\npuk_length = 8;\nencode = false;\nvalidity_days = 14 +;\nmax_active_per_person = 1;\n",
    )
    .await?;
    w.click("#save").await?;
    w.wait_for("#script-problem").await?;
    let line = w.text("#error-line").await?;
    ensure!(line.ends_with('4'), "the refused line is marked: {line}");
    let problem = w.text("#script-problem").await?;
    ensure!(problem.contains("line 4"), "{problem}");
    w.shot("admin-02-script-refused").await?;

    w.click("nav a[href=\"/admin/templates\"]").await?;
    w.images_loaded("img.card-image").await?;
    w.shot("admin-03-templates").await?;
    w.click("nav a[href=\"/admin/operators\"]").await?;
    w.shot("admin-04-operators").await?;

    // Request temporary cards, then find them in the audit log.
    w.click("nav a[href=\"/cards/request\"]").await?;
    w.fill("#amount", "3").await?;
    w.click("#request").await?;
    w.until_text(".alert.success", |t| t.contains("3 cards requested"))
        .await?;
    w.shot("admin-05-requested").await?;
    w.click("nav a[href=\"/persons\"]").await?;
    w.shot("admin-06-persons").await?;
    w.click("nav a[href=\"/admin/audit\"]").await?;
    w.until_text("table.audit", |t| t.contains("TempCardsProcRequest"))
        .await?;
    w.shot("admin-07-audit").await?;

    // A webhook subscription: the secret is shown once, then its deliveries page.
    w.click("nav a[href=\"/admin/webhooks\"]").await?;
    w.fill("#url", "http://127.0.0.1:9/cardwright").await?;
    w.click("input[name=events][value=\"card.assigned\"]")
        .await?;
    w.click("input[name=events][value=\"card.locked\"]").await?;
    w.shot("admin-08-webhook-form").await?;
    w.click("form[action=\"/admin/webhooks\"] button[type=submit]")
        .await?;
    let secret = w.text("#secret").await?;
    ensure!(
        secret.starts_with("whsec_"),
        "the secret is shown: {secret}"
    );
    w.shot("admin-09-webhook-secret").await?;
    w.click("#created a").await?;
    w.until_text("p.lead", |t| t.contains("card.assigned, card.locked"))
        .await?;
    w.shot("admin-10-webhook").await?;

    // A mail text with an unknown placeholder is refused with the placeholder named.
    w.click("nav a[href=\"/admin/mail\"]").await?;
    w.fill("#subject-reminder-en", "Card {{serial}} for {{name}}")
        .await?;
    w.click("#reminder-en button.primary").await?;
    w.until_text("#reminder-en .alert.error", |t| t.contains("{{name}}"))
        .await?;
    w.shot("admin-11-mail-refused").await?;
    w.fill(
        "#subject-reminder-en",
        "Card {{serial}} ends on {{valid_until}}",
    )
    .await?;
    w.click("#reminder-en button.primary").await?;
    w.until_text("#reminder-en .alert.success", |t| t.contains("Saved"))
        .await?;
    w.shot("admin-12-mail-saved").await?;

    // A new operator gets a one-time password and must choose a password of their own first.
    w.click("nav a[href=\"/admin/operators\"]").await?;
    w.fill("#username", "nina").await?;
    w.click("form[action=\"/admin/operators\"] input[value=\"registration-officer\"]")
        .await?;
    w.click("#add-operator").await?;
    let one_time = w.text("#one-time-password").await?;
    ensure!(
        one_time.len() == 24,
        "a one-time password is shown: {one_time}"
    );
    w.shot("admin-13-operator-added").await?;
    w.click("#logout").await?;
    w.open("/login").await?;
    w.fill("#username", "nina").await?;
    w.fill("#password", &one_time).await?;
    w.click("#login").await?;
    w.until_text("main", |t| t.contains("one-time password"))
        .await?;
    w.shot("admin-14-first-password").await?;
    w.fill("#old_password", &one_time).await?;
    w.fill("#new_password", "nina's own secret").await?;
    w.fill("#repeat_password", "nina's own secret").await?;
    w.click("#change-password").await?;
    w.wait_for("#changed").await?;
    w.open("/persons").await?;
    w.until_text("h1", |t| t.contains("Persons")).await?;
    Ok(())
}

/// A production-admin registers a station: its enrolment code is shown once with the command
/// for the desk; back on the list the station waits for its agent, and Disable disables it.
async fn stations_walk(w: &Walk<'_>) -> anyhow::Result<()> {
    w.click("#logout").await?;
    w.wait_for("#login").await?;
    w.log_in("pat").await?;
    w.click("nav a[href=\"/stations\"]").await?;
    w.fill("#name", "desk-2").await?;
    w.fill("#description", "Front desk, hall B").await?;
    w.click("#register-station").await?;
    let code = w.text("#enrollment-code").await?;
    ensure!(
        code.len() == 32 + 1 + 64,
        "an enrolment code is shown: {code}"
    );
    let command = w.text("#enroll-command").await?;
    ensure!(
        command.contains(&code),
        "the command carries the code: {command}"
    );
    w.shot("stations-01-code").await?;
    w.click("#back").await?;
    w.until_text("#station-desk-2 [data-field=state]", |t| t == "enrolling")
        .await?;
    w.shot("stations-02-list").await?;
    w.click("#disable-desk-2").await?;
    w.until_text("#station-desk-2 [data-field=state]", |t| t == "disabled")
        .await?;
    w.shot("stations-03-disabled").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_pages_in_a_browser() {
    let Some(session) = Session::open().await else {
        return;
    };
    // The walk subscribes a loopback URL, which only the allow-list lets through.
    let app = UiApp::start_with(|config| {
        config.webhooks.allowed_urls = vec!["http://127.0.0.1:9/".to_owned()];
    })
    .await;
    app.person("E3001", "Grace", "Hopper").await;
    let w = Walk::new(&session, &app);
    let mut outcome = admin_walk(&w).await;
    if outcome.is_ok() {
        outcome = stations_walk(&w).await;
    }
    if outcome.is_err() {
        let _ = w.shot("admin-failure").await;
    }
    session.end().await;
    app.stop().await;
    outcome.expect("the walk through the admin pages");
}

/// A real OpenID provider for single sign-on: node's oidc-provider (from the npm registry;
/// `scripts/test` installs it under the target folder), with its development sign-in pages,
/// started by the test on a loopback port and ended when dropped.
struct IdentityProvider {
    child: Child,
    port: u16,
    accounts: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for IdentityProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl IdentityProvider {
    /// Starts the provider for Cardwright's callback `redirect_uri`, with people and their
    /// groups.
    async fn start(port: u16, redirect_uri: &str, people: &serde_json::Value) -> Option<Self> {
        let module_dir = std::env::var_os("OIDC_PROVIDER_DIR").map_or_else(
            || screenshot_dir().with_file_name("oidc-provider"),
            PathBuf::from,
        );
        let module = module_dir.join("node_modules/oidc-provider/lib/index.js");
        let install = "install node and the npm package oidc-provider (scripts/test does, under \
                       the target folder, and sets OIDC_PROVIDER_DIR)";
        let node = find_program(&["node", "nodejs"]).unwrap_or_else(|| PathBuf::from("node"));
        if !cardwright_testkit::require(
            &[
                cardwright_testkit::Part::File(&module),
                cardwright_testkit::Part::Program(node.to_str().unwrap_or("node"), &["--version"]),
            ],
            install,
        ) {
            return None;
        }
        let dir = tempfile::tempdir().expect("provider folder");
        let accounts = dir.path().join("accounts.json");
        std::fs::write(&accounts, people.to_string()).unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ui/oidc_provider.mjs");
        let mut child = Command::new(node)
            .arg(script)
            .env(
                "OIDC_PROVIDER_MODULE",
                format!("file://{}", module.display()),
            )
            .env("PORT", port.to_string())
            .env("REDIRECT_URI", redirect_uri)
            .env("ACCOUNTS", &accounts)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node starts");
        let url = format!("http://127.0.0.1:{port}/.well-known/openid-configuration");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(res) = reqwest::get(&url).await {
                if res.status().is_success() {
                    break;
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the OpenID provider ended: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "the OpenID provider did not answer"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(Self {
            child,
            port,
            accounts,
            _dir: dir,
        })
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Gives `login` other groups from their next sign-in on.
    fn set_groups(&self, login: &str, groups: &[&str]) {
        let mut people: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&self.accounts).unwrap()).unwrap();
        people[login]["groups"] = serde_json::json!(groups);
        std::fs::write(&self.accounts, people.to_string()).unwrap();
    }
}

impl Walk<'_> {
    /// Signs in through the identity provider's pages as `login` (any password), giving consent
    /// when asked; the provider may also know the browser already and ask nothing.
    async fn sign_in_at_provider(&self, login: &str, provider: &str) -> anyhow::Result<()> {
        self.open("/login").await?;
        self.click("#sso").await?;
        let deadline = Instant::now() + WAIT;
        loop {
            let url = self.client.current_url().await?;
            let at_provider = url.as_str().starts_with(provider);
            if at_provider {
                if let Ok(field) = self.client.find(Locator::Css("input[name=login]")).await {
                    field.send_keys(login).await?;
                    self.fill("input[name=password]", "any password").await?;
                    self.shot("sso-02-provider-login").await?;
                    self.click("button[type=submit]").await?;
                } else if let Ok(button) = self
                    .client
                    .find(Locator::Css("button[type=submit][autofocus]"))
                    .await
                {
                    self.shot("sso-03-provider-consent").await?;
                    button.click().await?;
                }
            } else if url.path() != "/login/oidc" && url.path() != "/login/oidc/callback" {
                return Ok(());
            } else if self.client.find(Locator::Css(".alert.error")).await.is_ok() {
                // refused: the login page with the reason, at the callback's address
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the sign-in never came back: {url}"
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}

/// Single sign-on in Chromium against a real OpenID provider: roles from the `groups` claim
/// (and changed at the next sign-in when the groups change), logout, and a refused sign-in when
/// no group maps to a role.
async fn sso_walk(
    session: &Session,
    second: &Session,
    app: &UiApp,
    provider: &IdentityProvider,
) -> anyhow::Result<()> {
    let w = Walk::new(session, app);
    let issuer = provider.issuer();
    w.open("/login").await?;
    ensure!(
        w.text("#sso").await? == "Sign in with Example ID",
        "the login page offers single sign-on"
    );
    w.shot("sso-01-login").await?;
    w.sign_in_at_provider("alice", &issuer).await?;
    w.until_text("#operator-name", |t| t == "alice").await?;
    w.shot("sso-04-signed-in").await?;
    let roles = w.text(".roles").await?;
    ensure!(
        roles.contains("registration-officer"),
        "roles shown: {roles}"
    );
    let alice = account(app, "alice").await?;
    ensure!(alice.single_sign_on, "alice signs in through the provider");
    ensure!(
        alice
            .operator
            .roles
            .iter()
            .map(Role::as_str)
            .collect::<Vec<_>>()
            == ["registration-officer"],
        "{alice:?}"
    );
    // A registration officer reaches persons, not the operators page.
    w.open("/persons").await?;
    w.until_text("h1", |t| t.contains("Persons")).await?;

    // Logout: back at the login page, and the pages want a login again.
    w.click("#logout").await?;
    w.until_text(".alert", |t| t.contains("logged out")).await?;
    ensure!(
        w.path().await? == "/login",
        "after logout: {}",
        w.path().await?
    );
    w.open("/persons").await?;
    w.wait_for("#sso").await?;
    ensure!(
        w.path().await? == "/login",
        "a logged-out browser is sent to the login page"
    );
    w.shot("sso-05-logged-out").await?;

    // Roles follow the claim at every sign-in.
    provider.set_groups("alice", &["card-admins"]);
    w.sign_in_at_provider("alice", &issuer).await?;
    w.until_text("#operator-name", |t| t == "alice").await?;
    let alice = account(app, "alice").await?;
    ensure!(
        alice.operator.roles.contains(Role::PolicyAdmin)
            && alice.operator.roles.contains(Role::ProductionAdmin)
            && !alice.operator.roles.contains(Role::RegistrationOfficer),
        "{alice:?}"
    );
    w.open("/admin/operators").await?;
    w.until_text("h1", |t| t.contains("Operators")).await?;
    w.shot("sso-06-roles-changed").await?;

    // Someone whose groups map to no role is refused and gets no session.
    let other = Walk::new(second, app);
    other.sign_in_at_provider("eve", &issuer).await?;
    let error = other
        .until_text(".alert.error", |t| t.contains("no Cardwright role"))
        .await?;
    other.shot("sso-07-refused").await?;
    ensure!(error.contains("eve"), "{error}");
    other.open("/").await?;
    other.wait_for("#sso").await?;
    ensure!(
        account(app, "eve").await.is_err(),
        "no operator record for a refused sign-in"
    );
    Ok(())
}

/// An operator's account as administrators see it.
async fn account(
    app: &UiApp,
    username: &str,
) -> anyhow::Result<cardwright_processes::operators::OperatorAccount> {
    let all = cardwright_processes::operators::list(
        &app.ctx,
        &cardwright_processes::Actor::System("test"),
    )
    .await?;
    all.into_iter()
        .find(|a| a.operator.username.as_str() == username)
        .with_context(|| format!("no operator {username}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_sign_in_through_the_identity_provider() {
    let Some(session) = Session::open().await else {
        return;
    };
    let Some(second) = Session::open().await else {
        return;
    };
    let app_port = free_port();
    let redirect = format!("http://127.0.0.1:{app_port}/login/oidc/callback");
    let people = serde_json::json!({
        "alice": {"groups": ["card-desk", "staff"]},
        "eve": {"groups": ["visitors"]},
    });
    let Some(provider) = IdentityProvider::start(free_port(), &redirect, &people).await else {
        return;
    };
    let issuer = provider.issuer();
    let app = UiApp::start_with(|config| {
        config.listen = format!("127.0.0.1:{app_port}");
        let mut roles = std::collections::BTreeMap::new();
        roles.insert(
            "card-desk".to_owned(),
            RoleNames::One("registration-officer".into()),
        );
        roles.insert(
            "card-admins".to_owned(),
            RoleNames::Many(vec!["policy-admin".into(), "production-admin".into()]),
        );
        config.oidc = OidcConfig {
            issuer,
            client_id: "cardwright".into(),
            client_secret: "cardwright-test-secret".into(),
            redirect_url: redirect.clone(),
            name: "Example ID".into(),
            scopes: vec!["openid".into(), "profile".into(), "groups".into()],
            roles,
            ..OidcConfig::default()
        };
    })
    .await;
    let outcome = sso_walk(&session, &second, &app, &provider).await;
    if outcome.is_err() {
        let _ = Walk::new(&session, &app).shot("sso-failure").await;
        let _ = Walk::new(&second, &app).shot("sso-failure-second").await;
    }
    session.end().await;
    second.end().await;
    app.stop().await;
    drop(provider);
    outcome.expect("single sign-on in a browser");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}
