//! What a layout may cost. Layouts are uploaded by administrators and treated as hostile: their
//! structure is bounded before any SVG library recurses into them or copies parts of them, the
//! parsed drawing is bounded before it is rasterised, and every render runs on a thread of its
//! own under a time budget that it checks between its steps, so no layout can overflow a stack,
//! take the memory of the server or hold a request, and a render over its budget stops.
//!
//! The same checks run when a layout is uploaded (so the administrator learns the limit at once,
//! with a 422) and again by the renderer before every render (so a layout stored by any other
//! path is held to the same budget).
//!
//! How renders run within the time budget, and in which lane, is [`crate::lanes`].

use std::time::Duration;

use resvg::usvg;

/// Elements nested deeper than this are refused; XML parsers and SVG libraries recurse once per
/// level.
pub const MAX_DEPTH: usize = 32;
/// Elements in one layout.
pub const MAX_ELEMENTS: usize = 5_000;
/// Elements drawn, counting every copy a `<use>` or a marker makes of them.
pub const MAX_DRAWN_ELEMENTS: usize = 20_000;
/// Characters of text in one layout (the shipped card has under 200), also counting every copy
/// a `<use>` or a marker makes.
pub const MAX_TEXT_CHARS: usize = 4_000;
/// Path segments one render draws, counting every copy a `<use>` or a marker makes, the outlines
/// of text, and clip paths, masks and patterns once per element they apply to. Parsing and
/// drawing take time in proportion to the segments: this many take well under a tenth of a
/// second in a release build (about a second in a debug build), so no single step of a render
/// (parsing the layout, drawing one element, converting one page) can run long. The shipped
/// card's sides draw about 5,000 and 8,000 (4,000 characters of text draw about 70,000).
pub const MAX_PATH_SEGMENTS: usize = 100_000;
/// `<use>` elements in one layout; a `<use>` may not point at an element that holds another.
pub const MAX_USES: usize = 100;
/// Filter primitives in one layout.
pub const MAX_FILTER_PRIMITIVES: usize = 32;
/// `numOctaves` of `feTurbulence`: each octave is another pass over every pixel.
pub const MAX_TURBULENCE_OCTAVES: u32 = 8;
/// `stdDeviation` of blurs and shadows, in user units.
pub const MAX_BLUR_DEVIATION: f32 = 100.0;
/// `radius` of `feMorphology`: its cost grows with the square of the radius.
pub const MAX_MORPHOLOGY_RADIUS: f32 = 20.0;
/// `order` of `feConvolveMatrix`, per direction.
pub const MAX_CONVOLVE_ORDER: u32 = 5;
/// The drawing's size, per direction, in pixels (the shipped card is 324 × 204).
pub const MAX_CANVAS: f32 = 4_096.0;
/// An embedded image, per direction, in pixels.
pub const MAX_IMAGE_PIXELS: f32 = 4_096.0;
/// Memory the pixels of one render may take: the page, every filter region and every decoded
/// image, at four bytes a pixel.
pub const MEMORY_BUDGET_BYTES: f64 = 256.0 * 1024.0 * 1024.0;
/// Filter work in one render, in pixel operations: each primitive costs its region's pixels
/// times a weight for its kind (an octave of turbulence, a blur pass, the window of a
/// morphology or convolution). About a second of one core.
pub const MAX_FILTER_WORK: f64 = 64_000_000.0;
/// How long one render (a PDF or a PNG of one card) may take.
pub const TIME_BUDGET: Duration = Duration::from_secs(5);
/// How long a preview waits for room in the preview lane before it is refused as busy.
pub const PREVIEW_WAIT: Duration = Duration::from_secs(5);
/// Filters and PDF conversion rasterise at up to this many pixels per canvas pixel.
const RASTER_SCALE: f64 = 2.0;

/// Checks how deeply the elements of a layout nest, reading the text without recursion. XML
/// parsers and SVG libraries recurse once per level, so this runs before any of them sees the
/// layout. Comments, CDATA sections, processing instructions and quoted attribute values are
/// skipped; anything malformed is left to the parser to refuse.
pub fn check_nesting(svg: &str) -> Result<(), String> {
    let bytes = svg.as_bytes();
    let mut depth = 0_usize;
    let mut i = 0;
    let skip_to = |from: usize, end: &str| {
        svg[from..]
            .find(end)
            .map_or(bytes.len(), |at| from + at + end.len())
    };
    while let Some(at) = svg[i..].find('<') {
        i += at;
        let rest = &svg[i..];
        if rest.starts_with("<!--") {
            i = skip_to(i + 4, "-->");
        } else if rest.starts_with("<![CDATA[") {
            i = skip_to(i + 9, "]]>");
        } else if rest.starts_with("<?") {
            i = skip_to(i + 2, "?>");
        } else if rest.starts_with("<!") {
            i = skip_to(i + 2, ">");
        } else if rest.starts_with("</") {
            depth = depth.saturating_sub(1);
            i = skip_to(i + 2, ">");
        } else {
            // A start tag: find its end outside quoted attribute values.
            let mut quote = None;
            let mut j = i + 1;
            while j < bytes.len() {
                match (quote, bytes[j]) {
                    (None, b'"' | b'\'') => quote = Some(bytes[j]),
                    (Some(q), c) if c == q => quote = None,
                    (None, b'>') => break,
                    _ => {}
                }
                j += 1;
            }
            if j < bytes.len() && bytes[j - 1] != b'/' {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!(
                        "elements are nested more than {MAX_DEPTH} levels deep"
                    ));
                }
            }
            i = j + 1;
        }
        if i >= bytes.len() {
            break;
        }
    }
    Ok(())
}

/// Checks the element tree of a layout: element count, text length, `<use>` references and
/// filter parameters, before any SVG code converts it.
pub fn check_structure(doc: &roxmltree::Document) -> Result<(), String> {
    let mut elements = 0_usize;
    let mut text_chars = 0_usize;
    let mut uses = 0_usize;
    let mut primitives = 0_usize;
    for node in doc.descendants() {
        if node.is_text() {
            text_chars += node.text().map_or(0, |t| t.chars().count());
            if text_chars > MAX_TEXT_CHARS {
                return Err(format!(
                    "the layout has more than {MAX_TEXT_CHARS} characters of text"
                ));
            }
            continue;
        }
        if !node.is_element() {
            continue;
        }
        elements += 1;
        if elements > MAX_ELEMENTS {
            return Err(format!("the layout has more than {MAX_ELEMENTS} elements"));
        }
        let name = node.tag_name().name();
        if name == "use" {
            uses += 1;
            if uses > MAX_USES {
                return Err(format!(
                    "the layout has more than {MAX_USES} <use> elements"
                ));
            }
            check_use_target(doc, node)?;
        }
        if name.starts_with("fe") {
            primitives += 1;
            if primitives > MAX_FILTER_PRIMITIVES {
                return Err(format!(
                    "the layout has more than {MAX_FILTER_PRIMITIVES} filter primitives"
                ));
            }
            check_primitive(node)?;
        }
    }
    check_drawn(doc)
}

/// What a part of a layout draws.
#[derive(Debug, Default, Clone, Copy)]
struct Drawn {
    elements: usize,
    segments: usize,
    chars: usize,
}

impl Drawn {
    /// Adds `times` copies of `other`.
    fn add(&mut self, other: Drawn, times: usize) {
        self.elements = self
            .elements
            .saturating_add(other.elements.saturating_mul(times));
        self.segments = self
            .segments
            .saturating_add(other.segments.saturating_mul(times));
        self.chars = self.chars.saturating_add(other.chars.saturating_mul(times));
    }
}

/// Bounds what the layout draws once usvg has made the copies it makes while parsing: the
/// content of each `<use>` again, and the content of every marker at each vertex of a path
/// (counted as if every marker were on every vertex, since markers are inherited and may be set
/// from a style sheet). Parsing a 260 KB layout whose 128,700-segment path is used 100 times
/// took seconds and a hundred megabytes per render; this refuses it before parsing.
fn check_drawn(doc: &roxmltree::Document) -> Result<(), String> {
    const COPIES: &str = "counting each copy a <use> or a marker makes";
    let mut drawn = Drawn::default();
    let mut markers = Drawn::default();
    // What each element a `<use>` points at draws, read once however often it is used.
    let mut targets = std::collections::HashMap::new();
    let mut use_content = |node: roxmltree::Node| {
        let Some(target) = use_target(doc, node) else {
            return Drawn::default();
        };
        *targets.entry(target.id()).or_insert_with(|| {
            let mut content = Drawn::default();
            for part in target.descendants() {
                content.add(own(part), 1);
            }
            content
        })
    };
    for node in doc.descendants() {
        drawn.add(own(node), 1);
        if node.is_element() && node.tag_name().name() == "use" {
            drawn.add(use_content(node), 1);
        }
        if node.is_element() && node.tag_name().name() == "marker" {
            for part in node.descendants() {
                markers.add(own(part), 1);
                if part.is_element() && part.tag_name().name() == "use" {
                    markers.add(use_content(part), 1);
                }
            }
        }
    }
    // Each vertex of a path is at most one segment's end point.
    let vertices = drawn.segments;
    drawn.add(markers, vertices);
    if drawn.segments > MAX_PATH_SEGMENTS {
        return Err(format!(
            "the layout draws about {} path segments, {COPIES}; at most {MAX_PATH_SEGMENTS} are allowed",
            drawn.segments
        ));
    }
    if drawn.elements > MAX_DRAWN_ELEMENTS {
        return Err(format!(
            "the layout draws about {} elements, {COPIES}; at most {MAX_DRAWN_ELEMENTS} are allowed",
            drawn.elements
        ));
    }
    if drawn.chars > MAX_TEXT_CHARS {
        return Err(format!(
            "the layout draws more than {MAX_TEXT_CHARS} characters of text, {COPIES}"
        ));
    }
    Ok(())
}

/// The element a `<use>` points at.
fn use_target<'a, 'input>(
    doc: &'a roxmltree::Document<'input>,
    node: roxmltree::Node,
) -> Option<roxmltree::Node<'a, 'input>> {
    let target = node
        .attributes()
        .find(|a| a.name() == "href")
        .map(|a| a.value().trim().trim_start_matches('#'))?;
    doc.descendants()
        .find(|n| n.is_element() && n.attribute("id") == Some(target))
}

/// What one node draws itself, leaving out its children.
fn own(node: roxmltree::Node) -> Drawn {
    if node.is_text() {
        return Drawn {
            chars: node.text().map_or(0, |t| t.chars().count()),
            ..Drawn::default()
        };
    }
    if !node.is_element() {
        return Drawn::default();
    }
    let points = |attr: &str| node.attribute(attr).map_or(0, |v| numbers(v).count() / 2);
    let segments = match node.tag_name().name() {
        "path" => node.attribute("d").map_or(0, path_segments),
        "polyline" => points("points"),
        "polygon" => points("points") + 1,
        // Four sides, or four sides and four rounded corners, and the close.
        "rect" => 9,
        "circle" | "ellipse" => 5,
        "line" => 2,
        _ => 0,
    };
    Drawn {
        elements: 1,
        segments,
        chars: 0,
    }
}

/// The segments of path data, read without building the path: each command takes its numbers
/// in groups (a command letter may be followed by many groups), and an arc may become four
/// curves.
fn path_segments(d: &str) -> usize {
    let bytes = d.as_bytes();
    let mut segments = 0_usize;
    // Numbers per segment of the current command, and the segments each group makes.
    let (mut group, mut weight) = (0_usize, 0_usize);
    let mut numbers = 0_usize;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'+') {
            i = number_end(bytes, i);
            numbers += 1;
            if group > 0 && numbers.is_multiple_of(group) {
                segments = segments.saturating_add(weight);
            }
            continue;
        }
        if c.is_ascii_alphabetic() {
            (group, weight) = match c.to_ascii_lowercase() {
                b'm' | b'l' | b't' => (2, 1),
                b'h' | b'v' => (1, 1),
                b'c' => (6, 1),
                b's' | b'q' => (4, 1),
                b'a' => (7, 4),
                b'z' => {
                    segments = segments.saturating_add(1);
                    (0, 0)
                }
                _ => (0, 0),
            };
            numbers = 0;
        }
        i += 1;
    }
    segments
}

/// Where the number starting at `start` ends: a sign, digits, one decimal point, an exponent.
fn number_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    let digits = |i: &mut usize| {
        while *i < bytes.len() && bytes[*i].is_ascii_digit() {
            *i += 1;
        }
    };
    if matches!(bytes[i], b'-' | b'+') {
        i += 1;
    }
    digits(&mut i);
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        digits(&mut i);
    }
    if i < bytes.len()
        && matches!(bytes[i], b'e' | b'E')
        && bytes
            .get(i + 1)
            .is_some_and(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+'))
    {
        i += 2;
        digits(&mut i);
    }
    i.max(start + 1)
}

/// A `<use>` may copy an element, but not one that itself copies others: chains of copies grow
/// exponentially.
fn check_use_target(doc: &roxmltree::Document, node: roxmltree::Node) -> Result<(), String> {
    let Some(element) = use_target(doc, node) else {
        return Ok(());
    };
    if element
        .descendants()
        .any(|n| n.is_element() && n.tag_name().name() == "use")
    {
        return Err(format!(
            "<use> may not point at '{}', which itself contains <use>",
            element.attribute("id").unwrap_or_default()
        ));
    }
    Ok(())
}

fn numbers(value: &str) -> impl Iterator<Item = f64> + '_ {
    value
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<f64>().unwrap_or(f64::INFINITY))
}

fn check_primitive(node: roxmltree::Node) -> Result<(), String> {
    let name = node.tag_name().name();
    let over = |attr: &str, max: f64| {
        node.attribute(attr)
            .is_some_and(|v| numbers(v).any(|n| n.is_nan() || n.abs() > max))
    };
    match name {
        "feTurbulence" if over("numOctaves", f64::from(MAX_TURBULENCE_OCTAVES)) => Err(format!(
            "feTurbulence numOctaves may be at most {MAX_TURBULENCE_OCTAVES}"
        )),
        "feGaussianBlur" | "feDropShadow"
            if over("stdDeviation", f64::from(MAX_BLUR_DEVIATION)) =>
        {
            Err(format!(
                "{name} stdDeviation may be at most {MAX_BLUR_DEVIATION}"
            ))
        }
        "feMorphology" if over("radius", f64::from(MAX_MORPHOLOGY_RADIUS)) => Err(format!(
            "feMorphology radius may be at most {MAX_MORPHOLOGY_RADIUS}"
        )),
        "feConvolveMatrix" if over("order", f64::from(MAX_CONVOLVE_ORDER)) => Err(format!(
            "feConvolveMatrix order may be at most {MAX_CONVOLVE_ORDER}"
        )),
        _ => Ok(()),
    }
}

/// Checks the parsed drawing: its size, filter regions, filter parameters, embedded images and
/// the memory their pixels would take, counting `output_pixels` for the output itself.
pub fn check_tree(tree: &usvg::Tree, output_pixels: f64) -> Result<(), String> {
    let size = tree.size();
    if size.width() > MAX_CANVAS || size.height() > MAX_CANVAS {
        return Err(format!(
            "the layout is {:.0} × {:.0} pixels; at most {MAX_CANVAS} × {MAX_CANVAS} are allowed",
            size.width(),
            size.height()
        ));
    }
    let canvas = f64::from(size.width()) * f64::from(size.height());
    let mut cost = Cost {
        bytes: 4.0 * output_pixels.max(canvas * RASTER_SCALE * RASTER_SCALE),
        work: 0.0,
        canvas,
        segments: 0,
    };
    cost.group(tree.root())?;
    if cost.segments > MAX_PATH_SEGMENTS {
        return Err(format!(
            "the layout draws {} path segments, counting each copy a <use> or a marker makes and the outlines of its text; at most {MAX_PATH_SEGMENTS} are allowed",
            cost.segments
        ));
    }
    if cost.work > MAX_FILTER_WORK {
        return Err(format!(
            "the layout's filters would take about {:.0} million pixel operations; the budget is {:.0} million",
            (cost.work / 1e6).ceil(),
            MAX_FILTER_WORK / 1e6
        ));
    }
    if cost.bytes > MEMORY_BUDGET_BYTES {
        return Err(format!(
            "rendering would take about {} MiB; the budget is {} MiB",
            (cost.bytes / 1_048_576.0).ceil(),
            MEMORY_BUDGET_BYTES / 1_048_576.0
        ));
    }
    Ok(())
}

struct Cost {
    bytes: f64,
    work: f64,
    canvas: f64,
    /// Path segments drawn, clip paths, masks and patterns once per element they apply to.
    segments: usize,
}

impl Cost {
    fn group(&mut self, group: &usvg::Group) -> Result<(), String> {
        if !group.filters().is_empty() {
            let region = group.abs_layer_bounding_box();
            let area = f64::from(region.width()) * f64::from(region.height());
            if area > 4.0 * self.canvas {
                return Err(format!(
                    "a filter region of {:.0} × {:.0} pixels is more than four times the card",
                    region.width(),
                    region.height()
                ));
            }
            for filter in group.filters() {
                for primitive in filter.primitives() {
                    check_filter_kind(primitive.kind())?;
                    let pixels = area * RASTER_SCALE * RASTER_SCALE;
                    // Each primitive keeps a result image of the region.
                    self.bytes += 4.0 * pixels;
                    self.work += pixels * work_weight(primitive.kind());
                }
            }
        }
        for child in group.children() {
            self.node(child)?;
        }
        Ok(())
    }

    fn node(&mut self, node: &usvg::Node) -> Result<(), String> {
        // Clip paths, masks, patterns and filter images hold drawings of their own.
        let mut result = Ok(());
        node.subroots(|root| {
            if result.is_ok() {
                result = self.group(root);
            }
        });
        result?;
        match node {
            usvg::Node::Group(group) => self.group(group),
            usvg::Node::Image(image) => {
                let size = image.size();
                if size.width() > MAX_IMAGE_PIXELS || size.height() > MAX_IMAGE_PIXELS {
                    return Err(format!(
                        "an embedded image is {:.0} × {:.0} pixels; at most {MAX_IMAGE_PIXELS} × {MAX_IMAGE_PIXELS} are allowed",
                        size.width(),
                        size.height()
                    ));
                }
                self.bytes += 4.0 * f64::from(size.width()) * f64::from(size.height());
                Ok(())
            }
            usvg::Node::Text(text) => self.group(text.flattened()),
            usvg::Node::Path(path) => {
                self.segments = self.segments.saturating_add(path.data().verbs().len());
                Ok(())
            }
        }
    }
}

fn check_filter_kind(kind: &usvg::filter::Kind) -> Result<(), String> {
    use usvg::filter::Kind;
    match kind {
        Kind::Turbulence(t) if t.num_octaves() > MAX_TURBULENCE_OCTAVES => Err(format!(
            "feTurbulence numOctaves may be at most {MAX_TURBULENCE_OCTAVES}"
        )),
        Kind::GaussianBlur(b)
            if b.std_dev_x().get() > MAX_BLUR_DEVIATION
                || b.std_dev_y().get() > MAX_BLUR_DEVIATION =>
        {
            Err(format!(
                "feGaussianBlur stdDeviation may be at most {MAX_BLUR_DEVIATION}"
            ))
        }
        Kind::DropShadow(s)
            if s.std_dev_x().get() > MAX_BLUR_DEVIATION
                || s.std_dev_y().get() > MAX_BLUR_DEVIATION =>
        {
            Err(format!(
                "feDropShadow stdDeviation may be at most {MAX_BLUR_DEVIATION}"
            ))
        }
        Kind::Morphology(m)
            if m.radius_x().get() > MAX_MORPHOLOGY_RADIUS
                || m.radius_y().get() > MAX_MORPHOLOGY_RADIUS =>
        {
            Err(format!(
                "feMorphology radius may be at most {MAX_MORPHOLOGY_RADIUS}"
            ))
        }
        Kind::ConvolveMatrix(c)
            if c.matrix().columns() > MAX_CONVOLVE_ORDER
                || c.matrix().rows() > MAX_CONVOLVE_ORDER =>
        {
            Err(format!(
                "feConvolveMatrix order may be at most {MAX_CONVOLVE_ORDER}"
            ))
        }
        _ => Ok(()),
    }
}

/// Pixel operations per pixel of a filter primitive's region.
fn work_weight(kind: &usvg::filter::Kind) -> f64 {
    use usvg::filter::Kind;
    match kind {
        Kind::Turbulence(t) => f64::from(t.num_octaves().max(1)) * 4.0,
        Kind::GaussianBlur(_) => 6.0,
        Kind::DropShadow(_) => 8.0,
        Kind::Morphology(m) => {
            f64::from(2.0 * m.radius_x().get() + 1.0) * f64::from(2.0 * m.radius_y().get() + 1.0)
        }
        Kind::ConvolveMatrix(c) => f64::from(c.matrix().columns() * c.matrix().rows()),
        Kind::DiffuseLighting(_) | Kind::SpecularLighting(_) => 10.0,
        _ => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_data_is_counted_in_segments() {
        assert_eq!(path_segments("M0 0h1v1h-1z"), 5);
        assert_eq!(path_segments("M0,0 L1,1 2,2 3,3"), 4);
        assert_eq!(path_segments("M0 0c1 1 2 2 3 3 4 4 5 5 6 6"), 3);
        assert_eq!(path_segments("M1.5.5l-1-1e2-3 4"), 3);
        assert_eq!(path_segments("M0 0a5 5 0 0 1 10 10"), 5);
    }
}
