//! What a layout may cost. Layouts are uploaded by administrators and treated as hostile: their
//! structure is bounded before any SVG library recurses into them, the parsed drawing is bounded
//! before it is rasterised, and every render runs on a thread of its own under a time budget, so
//! no layout can overflow a stack, take the memory of the server or hold a request.
//!
//! The same checks run when a layout is uploaded (so the administrator learns the limit at once,
//! with a 422) and again by the renderer before every render (so a layout stored by any other
//! path is held to the same budget).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use resvg::usvg;

use crate::layout::LayoutError;

/// Elements nested deeper than this are refused; XML parsers and SVG libraries recurse once per
/// level.
pub const MAX_DEPTH: usize = 32;
/// Elements in one layout.
pub const MAX_ELEMENTS: usize = 5_000;
/// Characters of text in one layout (the shipped card has under 200).
pub const MAX_TEXT_CHARS: usize = 4_000;
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
/// Renders running at once in this process, including any that outran their time budget and
/// are still finishing; past this a render is refused rather than queued. Four per core, and
/// at least sixteen, so that many stations and previews at once are not refused.
pub fn max_renders_in_flight() -> usize {
    std::thread::available_parallelism()
        .map_or(4, std::num::NonZeroUsize::get)
        .saturating_mul(4)
        .max(16)
}
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
    Ok(())
}

/// A `<use>` may copy an element, but not one that itself copies others: chains of copies grow
/// exponentially.
fn check_use_target(doc: &roxmltree::Document, node: roxmltree::Node) -> Result<(), String> {
    let target = node
        .attributes()
        .find(|a| a.name() == "href")
        .map(|a| a.value().trim().trim_start_matches('#'));
    let Some(target) = target else {
        return Ok(());
    };
    let Some(element) = doc
        .descendants()
        .find(|n| n.is_element() && n.attribute("id") == Some(target))
    else {
        return Ok(());
    };
    if element
        .descendants()
        .any(|n| n.is_element() && n.tag_name().name() == "use")
    {
        return Err(format!(
            "<use> may not point at '{target}', which itself contains <use>"
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
    };
    cost.group(tree.root())?;
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
            usvg::Node::Path(_) => Ok(()),
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

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Leaves the in-flight count when the render thread ends, however it ends.
struct InFlight;

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs one render on a thread of its own and waits at most [`TIME_BUDGET`] for it. A render
/// that outruns the budget is answered with an error at once; its thread is left to finish
/// (the structural limits bound how long that takes) and counts against
/// [`max_renders_in_flight`] until it does. The thread is not a runtime's blocking task, so it
/// never holds up a shutdown.
pub fn with_time_budget<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, LayoutError> + Send + 'static,
) -> Result<T, LayoutError> {
    with_budget(TIME_BUDGET, work)
}

pub(crate) fn with_budget<T: Send + 'static>(
    budget: Duration,
    work: impl FnOnce() -> Result<T, LayoutError> + Send + 'static,
) -> Result<T, LayoutError> {
    let most = max_renders_in_flight();
    if IN_FLIGHT.fetch_add(1, Ordering::SeqCst) >= most {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        return Err(LayoutError::Budget(format!(
            "the renderer is busy with {most} renders; try again shortly"
        )));
    }
    let guard = InFlight;
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("cardwright-render".into())
        .stack_size(8 * 1024 * 1024)
        .spawn(move || {
            let _guard = guard;
            let _ = tx.send(work());
        })
        .map_err(|e| LayoutError::Render(format!("cannot start a render thread: {e}")))?;
    match rx.recv_timeout(budget) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(LayoutError::Budget(format!(
            "rendering took longer than {} s, the budget of one card",
            budget.as_secs_f32()
        ))),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err(LayoutError::Render("the render thread stopped".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_render_over_its_time_budget_is_answered_in_time() {
        let (release, wait) = mpsc::channel::<()>();
        let result = with_budget(Duration::from_millis(50), move || {
            let _ = wait.recv();
            Ok(())
        });
        assert!(matches!(result, Err(LayoutError::Budget(ref m)) if m.contains("longer than")));
        release.send(()).unwrap();
    }

    #[test]
    fn a_runtime_shuts_down_while_a_render_is_still_running() {
        let (release, wait) = mpsc::channel::<()>();
        let (finished_tx, finished) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        runtime.spawn(async move {
            let _ = tokio::task::spawn_blocking(move || {
                with_budget(Duration::from_millis(50), move || {
                    let _ = started_tx.send(());
                    let _ = wait.recv();
                    let _ = finished_tx.send(());
                    Ok(())
                })
            })
            .await;
        });
        started
            .recv_timeout(Duration::from_secs(30))
            .expect("the render starts");
        // Dropping a runtime waits for its blocking tasks; the caller's wait ends with the
        // budget, so this returns while the render itself is still blocked.
        drop(runtime);
        assert!(
            finished.try_recv().is_err(),
            "the render must still be running after the shutdown"
        );
        release.send(()).unwrap();
        finished
            .recv_timeout(Duration::from_secs(30))
            .expect("the render finishes once released");
    }
}
