//! Layouts an attacker with the policy-admin role could upload: each one once took the server down
//! (stack overflow), held a core for minutes or took hundreds of megabytes. Each is refused at
//! upload with the limit named, and the renderer refuses it too when it finds one stored.

use std::fmt::Write as _;
use std::time::Duration;

use cardwright_cardsdk::layout::{check_layout, CardArtwork, CardFace, Renderer, TEMPORARY_BACK};
use cardwright_cardsdk::limits::{MAX_PATH_SEGMENTS, TIME_BUDGET};
use cardwright_cardsdk::{Lane, LayoutError, Side};

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/hostile/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// (fixture, the words the refusal must contain)
const CASES: [(&str, &str); 9] = [
    ("nested-svg.svg", "nested more than 32 levels"),
    ("nested-tspan.svg", "nested more than 32 levels"),
    ("nested-g.svg", "nested more than 32 levels"),
    ("turbulence.svg", "numOctaves may be at most 8"),
    ("filter-work.svg", "million pixel operations"),
    ("blur-huge-region.svg", "filter region"),
    ("long-text.svg", "more than 4000 characters of text"),
    ("css-escape-url.svg", "CSS escapes"),
    ("use-chain.svg", "itself contains <use>"),
];

#[test]
fn hostile_layouts_are_refused_at_upload_naming_the_limit() {
    for (name, expected) in CASES {
        let err = check_layout(Side::Front, &fixture(name))
            .expect_err(name)
            .to_string();
        assert!(err.contains(expected), "{name}: {err}");
    }
}

#[test]
fn the_renderer_refuses_a_stored_hostile_layout_within_its_budget() {
    // A layout stored before the limits existed reaches the renderer without an upload check.
    for (name, expected) in CASES {
        if name == "css-escape-url.svg" {
            // Harmless to render: the renderer never fetches anything.
            continue;
        }
        let art = CardArtwork::new(
            &fixture(name),
            TEMPORARY_BACK,
            CardFace::sample("Temporary card"),
        );
        match art.png(Side::Front, 640) {
            Err(LayoutError::Budget(message)) => {
                assert!(message.contains(expected), "{name}: {message}");
            }
            other => panic!("{name}: expected a budget refusal, got {other:?}"),
        }
        assert!(
            matches!(art.pdf(), Err(LayoutError::Budget(_))),
            "{name}: the PDF must be refused too"
        );
    }
}

#[test]
fn previews_wider_than_the_limit_are_refused() {
    let art = CardArtwork::new(
        cardwright_cardsdk::layout::TEMPORARY_FRONT,
        TEMPORARY_BACK,
        CardFace::sample("Temporary card"),
    );
    let err = art.png(Side::Front, 100_000).unwrap_err().to_string();
    assert!(err.contains("2048 pixels wide"), "{err}");
    assert!(art.png(Side::Front, 640).is_ok());
    let filled = art.svg(Side::Front).unwrap();
    assert!(Renderer::shared().png(&filled, 0).is_err());
}

#[test]
fn a_heavy_layout_within_the_limits_still_renders() {
    // The limits leave room for real artwork: blurs, a turbulence texture, a shadow.
    let svg = r#"<svg xmlns="http://www.w3.org/2000/svg" width="856" height="540" viewBox="0 0 856 540">
      <filter id="f"><feTurbulence baseFrequency="0.02" numOctaves="4"/><feGaussianBlur stdDeviation="3"/></filter>
      <filter id="s"><feDropShadow dx="2" dy="2" stdDeviation="4"/></filter>
      <rect width="856" height="540" filter="url(#f)"/>
      <text x="40" y="200" font-size="48" filter="url(#s)">{{holder}}</text>
    </svg>"#;
    check_layout(Side::Front, svg).unwrap();
    let art = CardArtwork::new(svg, TEMPORARY_BACK, CardFace::sample("Temporary card"));
    assert!(art.png(Side::Front, 640).unwrap().starts_with(b"\x89PNG"));
    assert!(art.pdf().unwrap().starts_with(b"%PDF"));
}

const CARD: &str =
    r#"<svg xmlns="http://www.w3.org/2000/svg" width="856" height="540" viewBox="0 0 856 540">"#;

/// A path of `segments` segments in `<defs>`, drawn by `uses` `<use>` elements. With 128,700
/// segments and 100 uses it is the layout of the issue: 260 KB, legal before the segment limit,
/// and seconds and a hundred megabytes to parse per render.
fn copied_path(segments: usize, uses: usize) -> String {
    let steps = "h1v1".repeat(segments / 2);
    let mut copies = String::new();
    for i in 0..uses {
        let _ = write!(
            copies,
            r##"<use href="#p" x="{}" y="{}"/>"##,
            i % 10 * 8,
            i / 10 * 5
        );
    }
    format!(
        r##"{CARD}<defs><path id="p" d="M10 10{steps}" fill="none" stroke="#1d2b45" stroke-width="0.5"/></defs>{copies}</svg>"##
    )
}

#[test]
fn copies_are_counted_before_any_svg_library_makes_them() {
    let issue = copied_path(128_700, 100);
    assert!(
        issue.len() < 256 * 1024,
        "the issue's layout fits the size limit"
    );
    let cases = [
        (
            issue,
            "path segments, counting each copy a <use> or a marker makes",
        ),
        // 60,000 vertices, each carrying a marker of 1,000 segments: 60 million segments.
        (
            format!(
                r#"{CARD}<defs><marker id="m"><path d="M0 0{}" stroke="red"/></marker></defs><path d="M10 10{}" stroke="black" fill="none" marker-mid="url(#m)"/></svg>"#,
                "h1v1".repeat(500),
                "h1v-1".repeat(30_000)
            ),
            "path segments",
        ),
        // 3,900 characters of text drawn 100 times.
        (
            format!(
                r#"{CARD}<defs><text id="t" x="0" y="20">{}</text></defs>{}</svg>"#,
                "Lorem ipsum ".repeat(325),
                r##"<use href="#t"/>"##.repeat(100)
            ),
            "characters of text, counting each copy",
        ),
        // 4,800 empty groups drawn 100 times.
        (
            format!(
                r#"{CARD}<defs><g id="g">{}</g></defs>{}</svg>"#,
                "<g/>".repeat(4_800),
                r##"<use href="#g"/>"##.repeat(100)
            ),
            "elements, counting each copy",
        ),
    ];
    for (svg, expected) in &cases {
        let err = check_layout(Side::Front, svg).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
        // Stored without the check, the renderer refuses it as fast, before parsing it.
        let art = CardArtwork::new(svg, TEMPORARY_BACK, CardFace::sample("Temporary card"));
        match art.png_in(Lane::Preview, Side::Front, 640) {
            Err(LayoutError::Budget(message)) => assert!(message.contains(expected), "{message}"),
            other => panic!("expected a budget refusal, got {other:?}"),
        }
        assert!(matches!(art.pdf(), Err(LayoutError::Budget(_))));
    }
}

#[test]
fn the_most_a_layout_may_draw_still_renders() {
    // 101 copies (the path itself and 100 uses) just under the segment limit.
    let segments = MAX_PATH_SEGMENTS / 101 - 2;
    let svg = copied_path(segments, 100);
    check_layout(Side::Front, &svg).unwrap();
    let one_more = copied_path(segments + 40, 100);
    let err = check_layout(Side::Front, &one_more)
        .unwrap_err()
        .to_string();
    assert!(err.contains("path segments"), "{err}");
    let art = CardArtwork::new(&svg, TEMPORARY_BACK, CardFace::sample("Temporary card"));
    assert!(art
        .png_in(Lane::Preview, Side::Front, 640)
        .unwrap()
        .starts_with(b"\x89PNG"));
    assert!(art.pdf().unwrap().starts_with(b"%PDF"));
    let took = art.measure(TIME_BUDGET, 640).unwrap();
    assert!(took > Duration::ZERO);
}
