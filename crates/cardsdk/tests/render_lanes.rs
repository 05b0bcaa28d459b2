//! Production and previews render in lanes of their own: however many previews run, a card's
//! PDF and PIN letter are rendered at once, and previews wait for room in their own lane only.
//! This file runs as a process of its own, so the lanes it fills are its alone.

use std::fmt::Write as _;
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use cardwright_cardsdk::lanes::render_in;
use cardwright_cardsdk::layout::{
    check_layout, pin_letter_pdf, CardArtwork, CardFace, Renderer, TEMPORARY_BACK, TEMPORARY_FRONT,
};
use cardwright_cardsdk::limits::PREVIEW_WAIT;
use cardwright_cardsdk::{Lane, LayoutError, Side};

/// The tests here count what runs in the lanes, so they take turns.
static TURN: Mutex<()> = Mutex::new(());

const CARD: &str =
    r#"<svg xmlns="http://www.w3.org/2000/svg" width="856" height="540" viewBox="0 0 856 540">"#;

#[test]
fn previews_never_take_the_room_of_production() {
    let _turn = TURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let capacity = Lane::Preview.capacity();
    let (release, held) = mpsc::channel::<()>();
    let held = std::sync::Arc::new(std::sync::Mutex::new(held));
    let (started_tx, started) = mpsc::channel::<()>();
    let holders: Vec<_> = (0..capacity)
        .map(|_| {
            let (held, started_tx) = (held.clone(), started_tx.clone());
            std::thread::spawn(move || {
                render_in(Lane::Preview, Duration::from_mins(2), move |_| {
                    let _ = started_tx.send(());
                    let _ = held.lock().unwrap().recv();
                    Ok(())
                })
            })
        })
        .collect();
    for _ in 0..capacity {
        started.recv_timeout(Duration::from_secs(30)).unwrap();
    }
    assert_eq!(
        Lane::Preview.running(),
        capacity,
        "every preview room is taken"
    );

    let card = CardArtwork::new(
        TEMPORARY_FRONT,
        TEMPORARY_BACK,
        CardFace::sample("Temporary card"),
    );
    assert!(
        card.pdf().unwrap().starts_with(b"%PDF"),
        "a card's PDF renders at once"
    );
    assert!(pin_letter_pdf("TMP-000001", "123456", "2026-03-02")
        .unwrap()
        .starts_with(b"%PDF"));
    assert!(card.png(Side::Front, 640).unwrap().starts_with(b"\x89PNG"));

    // A preview waits for room of its own lane, and is refused as busy when none comes.
    let started = std::time::Instant::now();
    let refused = card.png_in(Lane::Preview, Side::Front, 640);
    assert!(matches!(refused, Err(LayoutError::Busy)), "{refused:?}");
    assert!(started.elapsed() >= PREVIEW_WAIT);

    for _ in 0..capacity {
        release.send(()).unwrap();
    }
    for holder in holders {
        holder.join().unwrap().unwrap();
    }
    assert!(card.png_in(Lane::Preview, Side::Front, 640).is_ok());
}

#[test]
fn a_render_over_its_budget_stops_instead_of_running_on() {
    let _turn = TURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Many elements, each a step of its own; a budget of a millisecond runs out among them.
    let mut shapes = String::new();
    for i in 0..4_000 {
        let _ = write!(
            shapes,
            r#"<rect x="{}" y="{}" width="3" height="3" rx="1"/>"#,
            i % 80 * 10,
            i / 80 * 10
        );
    }
    let svg = format!("{CARD}{shapes}</svg>");
    check_layout(Side::Front, &svg).unwrap();
    let art = CardArtwork::new(&svg, TEMPORARY_BACK, CardFace::sample("Temporary card"));
    let filled = art.svg(Side::Front).unwrap();
    let result =
        Renderer::shared().png_within(Lane::Preview, Duration::from_millis(1), &filled, 640);
    match result {
        Err(e @ LayoutError::TooSlow { .. }) => {
            assert!(e.to_string().contains("longer than 1 ms"), "{e}");
        }
        other => panic!("expected the render to stop, got {other:?}"),
    }
    assert_eq!(
        Lane::Preview.running(),
        0,
        "the render has stopped by the time it is answered"
    );
    // Measuring an upload reports how long the slowest render took, up to twice the budget.
    match art.measure(Duration::from_millis(1), 640) {
        Ok(took) => assert!(took > Duration::from_millis(1), "{took:?}"),
        Err(LayoutError::TooSlow { budget }) => assert_eq!(budget, Duration::from_millis(2)),
        Err(other) => panic!("{other}"),
    }
}
