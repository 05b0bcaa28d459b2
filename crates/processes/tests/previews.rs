//! Previews: rendered once for what they show and served from the cache, a few at once per
//! operator, and uploads refused when their card takes longer to render than a card may.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use cardwright_cardsdk::Side;
use cardwright_domain::{Operator, Role, Roles};
use cardwright_processes::services::previews::{PreviewSettings, Previews};
use cardwright_processes::temp_cards::{cards, request};
use cardwright_processes::templates::{self, TemplateInput};
use cardwright_processes::{auth, Actor, Context, ManualClock, ProcessError, Settings};
use cardwright_storage::audit::AuditKey;
use cardwright_storage::Store;
use chrono::{TimeZone, Utc};

struct World {
    ctx: Context,
    officer: Operator,
    policy: Operator,
    _dir: tempfile::TempDir,
}

async fn world(settings: PreviewSettings) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&Store::sqlite_url(&dir.path().join("cw.db")))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(),
    ));
    let ctx = Context::new(
        store,
        clock,
        Settings::default(),
        AuditKey::derive(&[7; 32]),
    )
    .with_previews(Previews::new(settings));
    templates::ensure_default(&ctx).await.unwrap();
    let add = |name: &'static str, role: Role| {
        let ctx = ctx.clone();
        async move {
            auth::add_operator(
                &ctx,
                &Actor::System("test"),
                name,
                [role].into_iter().collect::<Roles>(),
                "long enough password",
            )
            .await
            .unwrap()
        }
    };
    World {
        officer: add("officer", Role::RegistrationOfficer).await,
        policy: add("policy", Role::PolicyAdmin).await,
        ctx,
        _dir: dir,
    }
}

/// A path of 600 segments drawn 100 times: a second or so to preview in a debug build.
fn heavy_layout() -> String {
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

fn input(name: &str, prefix: &str, front: Option<String>) -> TemplateInput {
    TemplateInput {
        name: name.into(),
        serial_prefix: prefix.into(),
        front_svg: front,
        ..TemplateInput::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_is_rendered_once_and_those_asking_meanwhile_wait_for_it() {
    let w = world(PreviewSettings::default()).await;
    let previews = w.ctx.previews.clone();
    let ask = || templates::template_preview(&w.ctx, &w.officer, "Temporary card", Side::Front);
    let (a, b, c) = tokio::join!(ask(), ask(), ask());
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert!(a.starts_with(b"\x89PNG"));
    assert!(a == b && b == c);
    assert_eq!(previews.renders(), 1, "one render for three at once");
    assert_eq!(ask().await.unwrap(), a);
    assert_eq!(previews.renders(), 1, "then from the cache");
    assert!(previews.cached_bytes() >= a.len());

    let back = templates::template_preview(&w.ctx, &w.officer, "Temporary card", Side::Back)
        .await
        .unwrap();
    assert_ne!(back, a);
    assert_eq!(previews.renders(), 2);

    // A new version of the template is a new preview.
    let template = templates::get(&w.ctx, "Temporary card").await.unwrap();
    let front = cardwright_cardsdk::layout::TEMPORARY_FRONT.replace("TEMPORARY", "VISITOR");
    templates::update(
        &w.ctx,
        &w.policy,
        template.id,
        &input("Temporary card", "TMP-", Some(front)),
    )
    .await
    .unwrap();
    let changed = ask().await.unwrap();
    assert_ne!(changed, a);
    assert_eq!(previews.renders(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_keeps_to_its_size() {
    let w = world(PreviewSettings {
        cache_bytes: 200 * 1024,
        ..PreviewSettings::default()
    })
    .await;
    let cards = request::request(&w.ctx, &w.officer, "Temporary card", 6)
        .await
        .unwrap();
    for card in &cards {
        let png = cards::preview(&w.ctx, &w.officer, card.card.id, Side::Front)
            .await
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        // A card's preview is about 77 KiB: two fit.
        let cached = w.ctx.previews.cached_bytes();
        assert!(cached > 0 && cached <= 200 * 1024, "{cached}");
    }
    assert_eq!(w.ctx.previews.renders(), 6);
    // The oldest were forgotten, the newest is kept.
    let last = cards.last().unwrap().card.id;
    cards::preview(&w.ctx, &w.officer, last, Side::Front)
        .await
        .unwrap();
    assert_eq!(w.ctx.previews.renders(), 6);
    cards::preview(&w.ctx, &w.officer, cards[0].card.id, Side::Front)
        .await
        .unwrap();
    assert_eq!(w.ctx.previews.renders(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_has_only_a_few_previews_rendering_at_once() {
    let w = world(PreviewSettings {
        per_operator: 2,
        ..PreviewSettings::default()
    })
    .await;
    templates::create(
        &w.ctx,
        &w.policy,
        &input("Heavy", "HVY-", Some(heavy_layout())),
    )
    .await
    .unwrap();
    let heavy = request::request(&w.ctx, &w.officer, "Heavy", 4)
        .await
        .unwrap();
    let ask = |n: usize| cards::preview(&w.ctx, &w.officer, heavy[n].card.id, Side::Front);
    let (first, second, third, fourth) = tokio::join!(ask(0), ask(1), ask(2), ask(3));
    let answers = [first, second, third, fourth];
    let refused: Vec<_> = answers
        .iter()
        .filter_map(|a| match a {
            Err(ProcessError::Limited {
                message,
                retry_after,
            }) => Some((message.clone(), *retry_after)),
            _ => None,
        })
        .collect();
    assert!(!refused.is_empty(), "four at once, two allowed");
    for (message, retry_after) in &refused {
        assert_eq!(
            message,
            "you have 2 previews being rendered, as many as one operator may have at once; try again in 5 s"
        );
        assert_eq!(*retry_after, Duration::from_secs(5));
    }
    for answer in &answers {
        // Previews of other tests in this process may fill the preview lane meanwhile (Busy).
        assert!(
            matches!(
                answer,
                Ok(_) | Err(ProcessError::Limited { .. } | ProcessError::Busy { .. })
            ),
            "{answer:?}"
        );
    }
    // The turns are back once the renders ended; a refused preview renders now.
    for n in 0..4 {
        assert!(ask(n).await.unwrap().starts_with(b"\x89PNG"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_the_budget_are_refused_with_the_time_they_took() {
    let w = world(PreviewSettings {
        card_budget: Duration::from_millis(1),
        ..PreviewSettings::default()
    })
    .await;
    let refused = templates::create(
        &w.ctx,
        &w.policy,
        &input("Heavy", "HVY-", Some(heavy_layout())),
    )
    .await
    .unwrap_err();
    let ProcessError::Unprocessable(message) = refused else {
        panic!("{refused:?}")
    };
    assert!(
        message.starts_with("rendering this layout took ")
            && message.ends_with("; a card may take at most 1 ms"),
        "{message}"
    );
    assert!(
        templates::get(&w.ctx, "Heavy").await.is_err(),
        "nothing saved"
    );
    // Without an uploaded layout there is nothing to measure.
    templates::create(&w.ctx, &w.policy, &input("Plain", "PLN-", None))
        .await
        .unwrap();
    let plain = templates::get(&w.ctx, "Plain").await.unwrap();
    let changed = templates::update(
        &w.ctx,
        &w.policy,
        plain.id,
        &input("Plain", "PLN-", Some(heavy_layout())),
    )
    .await
    .unwrap_err();
    assert!(
        changed.to_string().contains("rendering this layout took"),
        "{changed}"
    );
    assert_eq!(
        templates::get(&w.ctx, "Plain").await.unwrap().front_layout,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_within_the_budget_are_saved() {
    let w = world(PreviewSettings::default()).await;
    let created = templates::create(
        &w.ctx,
        &w.policy,
        &input("Heavy", "HVY-", Some(heavy_layout())),
    )
    .await
    .unwrap();
    assert!(created.front_layout.is_some());
}
