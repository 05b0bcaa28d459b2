//! Card layouts: a front and a back SVG with placeholders, checked as untrusted input, filled with
//! a card's values and rendered as a print-ready PDF (ID-1, front then back, text as real text) or
//! a PNG preview.
//!
//! Placeholders: `{{serial}}`, `{{template}}`, `{{holder}}`, `{{valid_until}}`, `{{issue_date}}` in
//! text or attributes, and elements marked `data-cardwright="qr"` (a QR code of the serial fills
//! the element's box) or `data-cardwright="photo"` (the holder's photo, when there is one).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use resvg::usvg;

use std::time::{Duration, Instant};

use crate::lanes::{self, Deadline, Lane};
use crate::limits;

pub use crate::render::Renderer;

/// The largest layout accepted, per side.
pub const MAX_LAYOUT_BYTES: usize = 256 * 1024;

/// The widest PNG preview rendered, in pixels.
pub const MAX_PNG_WIDTH: u32 = 2_048;

/// ID-1 (CR80) card size in millimetres.
pub const CARD_WIDTH_MM: f32 = 85.60;
pub const CARD_HEIGHT_MM: f32 = 53.98;

pub(crate) const POINTS_PER_MM: f32 = 72.0 / 25.4;

/// The shipped temporary card layout.
pub const TEMPORARY_FRONT: &str = include_str!("../layouts/temporary-front.svg");
pub const TEMPORARY_BACK: &str = include_str!("../layouts/temporary-back.svg");
/// The PIN letter (A6) that goes with an encoded card.
pub const PIN_LETTER: &str = include_str!("../layouts/pin-letter.svg");

pub(crate) const FONTS: [&[u8]; 2] = [
    include_bytes!("../fonts/DejaVuSans.ttf"),
    include_bytes!("../fonts/DejaVuSans-Bold.ttf"),
];

/// Why a layout was refused or could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("the {side} layout is {size} bytes; at most {max} are accepted")]
    TooLarge {
        side: &'static str,
        size: usize,
        max: usize,
    },
    #[error("the {side} layout is not well-formed SVG: {message}")]
    Malformed { side: &'static str, message: String },
    #[error("the {side} layout is refused: {message}")]
    Forbidden { side: &'static str, message: String },
    #[error("rendering failed: {0}")]
    Render(String),
    /// The render would take more time or memory than one card may, by the structural limits.
    #[error("rendering refused: {0}")]
    Budget(String),
    /// The render ran out of its time budget and stopped.
    #[error("rendering refused: rendering took longer than {}, the budget of one card", lanes::describe(*budget))]
    TooSlow { budget: std::time::Duration },
    /// The preview lane stayed full for as long as a preview waits for room.
    #[error("the renderer is busy with other previews; try again in a few seconds")]
    Busy,
}

/// Which side of the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Front,
    Back,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Front => "front",
            Side::Back => "back",
        }
    }
}

/// Elements that can run code, pull in other documents or animate.
const FORBIDDEN_ELEMENTS: [&str; 12] = [
    "script",
    "foreignObject",
    "iframe",
    "object",
    "embed",
    "audio",
    "video",
    "animate",
    "animateMotion",
    "animateTransform",
    "set",
    "handler",
];

/// Checks an uploaded layout: size, well-formed SVG without a DTD (so no entity expansion), no
/// scripts, event handlers or animation, no reference to anything outside the document except
/// embedded PNG or JPEG images, and the structural and rendering limits of [`crate::limits`].
pub fn check_layout(side: Side, svg: &str) -> Result<(), LayoutError> {
    let side_name = side.as_str();
    if svg.len() > MAX_LAYOUT_BYTES {
        return Err(LayoutError::TooLarge {
            side: side_name,
            size: svg.len(),
            max: MAX_LAYOUT_BYTES,
        });
    }
    let forbidden = |message: String| LayoutError::Forbidden {
        side: side_name,
        message,
    };
    limits::check_nesting(svg).map_err(forbidden)?;
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: 50_000,
    };
    let doc = roxmltree::Document::parse_with_options(svg, options).map_err(|e| {
        let message = match e {
            roxmltree::Error::DtdDetected => {
                "a DOCTYPE (DTD) is not allowed: entity declarations could expand without bound"
                    .to_owned()
            }
            other => other.to_string(),
        };
        LayoutError::Malformed {
            side: side_name,
            message,
        }
    })?;
    limits::check_structure(&doc).map_err(&forbidden)?;
    let root = doc.root_element();
    if root.tag_name().name() != "svg" {
        return Err(forbidden(format!(
            "the root element is <{}>, not <svg>",
            root.tag_name().name()
        )));
    }
    for node in doc.descendants() {
        if node.is_pi() {
            return Err(forbidden(
                "processing instructions (such as xml-stylesheet) are not allowed".into(),
            ));
        }
        if !node.is_element() {
            continue;
        }
        let name = node.tag_name().name();
        if FORBIDDEN_ELEMENTS
            .iter()
            .any(|f| f.eq_ignore_ascii_case(name))
        {
            return Err(forbidden(format!("<{name}> elements are not allowed")));
        }
        if name == "style" {
            let css = node.text().unwrap_or_default();
            check_css(css).map_err(&forbidden)?;
        }
        for attr in node.attributes() {
            let attr_name = attr.name();
            if attr_name.to_ascii_lowercase().starts_with("on") {
                return Err(forbidden(format!(
                    "event handler attribute '{attr_name}' is not allowed"
                )));
            }
            if attr_name == "href" {
                check_href(attr.value()).map_err(&forbidden)?;
            }
            check_css(attr.value()).map_err(&forbidden)?;
        }
    }
    let tree = usvg::Tree::from_xmltree(&doc, &Renderer::shared().options).map_err(|e| {
        LayoutError::Malformed {
            side: side_name,
            message: e.to_string(),
        }
    })?;
    if tree.size().width() <= 0.0 || tree.size().height() <= 0.0 {
        return Err(forbidden("the layout has no size".into()));
    }
    limits::check_tree(&tree, 0.0).map_err(forbidden)
}

fn check_href(value: &str) -> Result<(), String> {
    let v = value.trim();
    if v.starts_with('#')
        || v.starts_with("data:image/png;base64,")
        || v.starts_with("data:image/jpeg;base64,")
    {
        Ok(())
    } else {
        Err(format!(
            "the link '{}' points outside the layout; only #fragments and embedded PNG or JPEG images are allowed",
            v.chars().take(80).collect::<String>()
        ))
    }
}

fn check_css(text: &str) -> Result<(), String> {
    // A CSS escape can spell a function name (`u\72l(`) that the checks below would not see.
    if text.contains('\\') {
        return Err("backslashes (CSS escapes) are not allowed in styles or attributes".into());
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("@import") {
        return Err("CSS @import is not allowed".into());
    }
    let mut rest = lower.as_str();
    while let Some(at) = rest.find("url(") {
        let target = rest[at + 4..].trim_start().trim_start_matches(['"', '\'']);
        if !target.starts_with('#') {
            return Err("url(...) may only point to #fragments of the layout".into());
        }
        rest = &rest[at + 4..];
    }
    Ok(())
}

/// A card's values for its layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardFace {
    pub serial: String,
    pub template: String,
    pub holder: Option<String>,
    pub valid_until: Option<String>,
    pub issue_date: String,
    /// The holder's photo as (MIME type, bytes): `image/png` or `image/jpeg`.
    pub photo: Option<(String, Vec<u8>)>,
}

impl CardFace {
    /// Values for a template preview.
    pub fn sample(template: &str) -> Self {
        Self {
            serial: "TMP-000123".into(),
            template: template.into(),
            holder: Some("Ada Lovelace".into()),
            valid_until: Some("2026-12-31".into()),
            issue_date: "2026-12-17".into(),
            photo: None,
        }
    }
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn number(node: roxmltree::Node, attr: &str) -> f64 {
    node.attribute(attr)
        .and_then(|v| v.trim().trim_end_matches("px").parse().ok())
        .unwrap_or(0.0)
}

/// The modules of the QR code of `text` (error correction M) and its width. The mask is the
/// first of the standard's eight rather than the one scoring best on its penalty rules: every
/// mask gives a valid code that readers decode, and scoring all eight was about a third of the
/// time it takes to render a card.
fn qr_modules(text: &str) -> Option<(Vec<qrcode::Color>, usize)> {
    use qrcode::{canvas, ec, EcLevel};
    let bits = qrcode::bits::encode_auto(text.as_bytes(), EcLevel::M).ok()?;
    let version = bits.version();
    let (data, correction) =
        ec::construct_codewords(&bits.into_bytes(), version, EcLevel::M).ok()?;
    let mut canvas = canvas::Canvas::new(version, EcLevel::M);
    canvas.draw_all_functional_patterns();
    canvas.draw_data(&data, &correction);
    canvas.apply_mask(canvas::MaskPattern::Checkerboard);
    let width = usize::try_from(version.width()).ok()?;
    Some((canvas.into_colors(), width))
}

/// The QR code of `text` as SVG drawn into the box (x, y, size).
fn qr_svg(text: &str, x: f64, y: f64, size: f64) -> String {
    let Some((colors, width)) = qr_modules(text) else {
        return String::new();
    };
    let quiet = 2;
    let modules = width + 2 * quiet;
    #[allow(
        clippy::cast_precision_loss,
        reason = "QR codes are at most 177 modules wide"
    )]
    let scale = size / modules as f64;
    let mut path = String::new();
    for (i, color) in colors.iter().enumerate() {
        if *color == qrcode::Color::Dark {
            let (col, row) = (i % width + quiet, i / width + quiet);
            let _ = write!(path, "M{col} {row}h1v1h-1z");
        }
    }
    format!(
        "<g transform=\"translate({x} {y}) scale({scale})\"><rect width=\"{modules}\" height=\"{modules}\" fill=\"#ffffff\"/>\
         <path d=\"{path}\" fill=\"#000000\"/></g>"
    )
}

/// Fills a checked layout with a card's values.
pub fn fill(svg: &str, face: &CardFace) -> Result<String, LayoutError> {
    limits::check_nesting(svg).map_err(LayoutError::Budget)?;
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: 50_000,
    };
    let doc = roxmltree::Document::parse_with_options(svg, options)
        .map_err(|e| LayoutError::Render(format!("layout does not parse: {e}")))?;
    let mut replacements: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    for node in doc.descendants().filter(roxmltree::Node::is_element) {
        let (x, y, w, h) = (
            number(node, "x"),
            number(node, "y"),
            number(node, "width"),
            number(node, "height"),
        );
        match node.attribute("data-cardwright") {
            Some("qr") => replacements.push((node.range(), qr_svg(&face.serial, x, y, w.min(h)))),
            Some("photo") => {
                let replacement = match &face.photo {
                    Some((mime, bytes)) if mime == "image/png" || mime == "image/jpeg" => format!(
                        "<image x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" preserveAspectRatio=\"xMidYMid slice\" href=\"data:{mime};base64,{}\"/>",
                        base64::engine::general_purpose::STANDARD.encode(bytes)
                    ),
                    _ => format!("<rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" fill=\"#e9ecef\"/>"),
                };
                replacements.push((node.range(), replacement));
            }
            _ => {}
        }
    }
    let mut out = String::with_capacity(svg.len() + 4096);
    let mut at = 0;
    replacements.sort_by_key(|(range, _)| range.start);
    for (range, text) in replacements {
        if range.start < at {
            continue;
        }
        out.push_str(&svg[at..range.start]);
        out.push_str(&text);
        at = range.end;
    }
    out.push_str(&svg[at..]);
    let values: HashMap<&str, String> = HashMap::from([
        ("{{serial}}", escape(&face.serial)),
        ("{{template}}", escape(&face.template)),
        ("{{holder}}", escape(face.holder.as_deref().unwrap_or(""))),
        (
            "{{valid_until}}",
            escape(face.valid_until.as_deref().unwrap_or("")),
        ),
        ("{{issue_date}}", escape(&face.issue_date)),
    ]);
    for (placeholder, value) in values {
        if out.contains(placeholder) {
            out = out.replace(placeholder, &value);
        }
    }
    Ok(out)
}

/// The PIN letter for an encoded card (A6 PDF). The PIN exists only in this document.
pub fn pin_letter_pdf(serial: &str, pin: &str, issue_date: &str) -> Result<Vec<u8>, LayoutError> {
    let filled = PIN_LETTER
        .replace("{{serial}}", &escape(serial))
        .replace("{{pin}}", &escape(pin))
        .replace("{{issue_date}}", &escape(issue_date));
    Renderer::shared().pdf_pages(&[&filled], 148.0, 105.0)
}

/// One render of a card, as [`CardArtwork::measure`] times it.
type Step = dyn FnOnce(&Deadline) -> Result<Vec<u8>, LayoutError> + Send;

/// A card's layouts and values. Nothing is filled or rendered until a printer or a preview
/// asks for it, so a printer that needs no artwork pays nothing for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardArtwork {
    front_layout: Arc<str>,
    back_layout: Arc<str>,
    face: CardFace,
}

impl CardArtwork {
    pub fn new(front_layout: &str, back_layout: &str, face: CardFace) -> Self {
        Self {
            front_layout: front_layout.into(),
            back_layout: back_layout.into(),
            face,
        }
    }

    /// The filled SVG of one side.
    pub fn svg(&self, side: Side) -> Result<String, LayoutError> {
        match side {
            Side::Front => fill(&self.front_layout, &self.face),
            Side::Back => fill(&self.back_layout, &self.face),
        }
    }

    /// The print-ready PDF, front then back, in the production lane.
    pub fn pdf(&self) -> Result<Vec<u8>, LayoutError> {
        Renderer::shared().pdf(&self.svg(Side::Front)?, &self.svg(Side::Back)?)
    }

    /// A PNG of one side, `width` pixels wide, in the production lane (the picture spooled
    /// with a card).
    pub fn png(&self, side: Side, width: u32) -> Result<Vec<u8>, LayoutError> {
        self.png_in(Lane::Production, side, width)
    }

    /// A PNG of one side, `width` pixels wide, in `lane`.
    pub fn png_in(&self, lane: Lane, side: Side, width: u32) -> Result<Vec<u8>, LayoutError> {
        Renderer::shared().png_in(lane, &self.svg(side)?, width)
    }

    /// How long the slowest of the card's renders takes: its PDF, and a PNG of each side
    /// `width` pixels wide. An uploaded layout is judged by it against `budget`. The renders run
    /// in the preview lane and each may go on to twice the budget before it is stopped (then
    /// the answer is [`LayoutError::TooSlow`] with that longer budget), so an administrator
    /// learns how far over the budget a layout is; measuring ends at the first render over the
    /// budget.
    pub fn measure(&self, budget: Duration, width: u32) -> Result<Duration, LayoutError> {
        let (front, back) = (self.svg(Side::Front)?, self.svg(Side::Back)?);
        let longest = budget.saturating_mul(2);
        let timed = |work: Box<Step>| {
            lanes::render_in(Lane::Preview, longest, move |deadline| {
                let started = Instant::now();
                work(deadline)?;
                Ok(started.elapsed())
            })
        };
        let pages = [front.clone(), back.clone()];
        let mut slowest = timed(Box::new(move |deadline| {
            Renderer::shared().pdf_pages_now(&pages, CARD_WIDTH_MM, CARD_HEIGHT_MM, deadline)
        }))?;
        for side in [front, back] {
            if slowest > budget {
                break;
            }
            let took = timed(Box::new(move |deadline| {
                Renderer::shared().png_now(&side, width, deadline)
            }))?;
            slowest = slowest.max(took);
        }
        Ok(slowest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_layouts_pass_their_own_checks() {
        check_layout(Side::Front, TEMPORARY_FRONT).unwrap();
        check_layout(Side::Back, TEMPORARY_BACK).unwrap();
    }

    #[test]
    fn values_are_escaped_and_the_qr_code_drawn() {
        let mut face = CardFace::sample("Guests & <Visitors>");
        face.serial = "TMP-000042".into();
        let filled = fill(TEMPORARY_FRONT, &face).unwrap();
        assert!(filled.contains("Guests &amp; &lt;Visitors&gt;"));
        assert!(filled.contains("TMP-000042"));
        assert!(!filled.contains("data-cardwright"));
        assert!(filled.contains("h1v1h-1z"));
        check_layout(Side::Front, &filled).unwrap();
    }

    #[test]
    fn the_qr_code_decodes_to_the_serial() {
        for serial in ["TMP-000042", "VISITOR-12345678", "A"] {
            let (modules, width) = qr_modules(serial).unwrap();
            // Four pixels a module and a quiet zone of four modules, as a reader sees it.
            let (quiet, px) = (4, 4);
            let side = (width + 2 * quiet) * px;
            let mut image = rqrr::PreparedImage::prepare_from_greyscale(side, side, |x, y| {
                let (mx, my) = (x / px, y / px);
                let dark = mx >= quiet
                    && my >= quiet
                    && mx < quiet + width
                    && my < quiet + width
                    && modules[(my - quiet) * width + (mx - quiet)] == qrcode::Color::Dark;
                if dark {
                    0
                } else {
                    255
                }
            });
            let grids = image.detect_grids();
            assert_eq!(grids.len(), 1, "{serial}");
            let (_, content) = grids[0].decode().unwrap();
            assert_eq!(content, serial);
        }
    }

    #[test]
    fn malicious_layouts_are_refused() {
        let cases = [
            ("<?xml version=\"1.0\"?><!DOCTYPE svg [<!ENTITY a \"aaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]><svg xmlns=\"http://www.w3.org/2000/svg\"><text>&b;</text></svg>", "DOCTYPE"),
            ("<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>", "<script>"),
            ("<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>", "event handler"),
            ("<svg xmlns=\"http://www.w3.org/2000/svg\" xmlns:xlink=\"http://www.w3.org/1999/xlink\"><image xlink:href=\"http://evil.example/x.png\" width=\"10\" height=\"10\"/></svg>", "outside"),
            ("<svg xmlns=\"http://www.w3.org/2000/svg\"><image href=\"file:///etc/passwd\" width=\"10\" height=\"10\"/></svg>", "outside"),
            ("<svg xmlns=\"http://www.w3.org/2000/svg\"><style>@import url(http://evil.example/a.css);</style></svg>", "@import"),
            ("<svg xmlns=\"http://www.w3.org/2000/svg\"><rect style=\"fill: url(http://evil.example/p)\" width=\"1\" height=\"1\"/></svg>", "url("),
            ("<svg xmlns=\"http://www.w3.org/2000/svg\"><foreignObject><div/></foreignObject></svg>", "foreignObject"),
            ("<html/>", "root element"),
            ("<svg", "well-formed"),
        ];
        for (svg, expected) in cases {
            let err = check_layout(Side::Front, svg).unwrap_err().to_string();
            assert!(err.contains(expected), "{svg}: {err}");
        }
        let huge = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\"><!--{}--></svg>",
            "x".repeat(50 * 1024 * 1024)
        );
        assert!(matches!(
            check_layout(Side::Back, &huge),
            Err(LayoutError::TooLarge { .. })
        ));
    }

    #[test]
    fn pdf_has_two_card_sized_pages_and_png_card_proportions() {
        let art = CardArtwork::new(
            TEMPORARY_FRONT,
            TEMPORARY_BACK,
            CardFace::sample("Temporary card"),
        );
        let pdf = art.pdf().unwrap();
        assert!(pdf.starts_with(b"%PDF"));
        let png = art.png(Side::Front, 428).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
        assert_eq!((width, height), (428, 270));
    }
}
