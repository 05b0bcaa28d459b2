//! Layouts an attacker with the policy-admin role could upload: each one once took the server down
//! (stack overflow), held a core for minutes or took hundreds of megabytes. Each is refused at
//! upload with the limit named, and the renderer refuses it too when it finds one stored.

use cardwright_cardsdk::layout::{check_layout, CardArtwork, CardFace, Renderer, TEMPORARY_BACK};
use cardwright_cardsdk::{LayoutError, Side};

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
