//! The renderer: layouts drawn with the bundled fonts into PNG previews and print-ready PDFs,
//! one step at a time under a render's deadline, never reading files or the network.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref};
use resvg::tiny_skia;
use resvg::usvg::{self, fontdb};

use crate::lanes::{self, Deadline, Lane};
use crate::layout::{
    LayoutError, CARD_HEIGHT_MM, CARD_WIDTH_MM, FONTS, MAX_PNG_WIDTH, POINTS_PER_MM,
};
use crate::limits;

/// The most pixels an embedded image (a photo, a logo) may have on a side.
const MAX_EMBEDDED_SIDE: usize = 4096;

/// An embedded image as the renderer may decode it: a PNG or a JPEG by its own first bytes
/// (whatever its `data:` URL claims), of at most [`MAX_EMBEDDED_SIDE`] pixels a side. Anything
/// else (another format, a nested SVG, a decompression bomb) is left out of the picture.
fn embedded_image(data: Arc<Vec<u8>>) -> Option<usvg::ImageKind> {
    let size = imagesize::blob_size(&data).ok()?;
    if size.width == 0
        || size.height == 0
        || size.width > MAX_EMBEDDED_SIDE
        || size.height > MAX_EMBEDDED_SIDE
    {
        return None;
    }
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(usvg::ImageKind::PNG(data))
    } else if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(usvg::ImageKind::JPEG(data))
    } else {
        None
    }
}

/// Renders layouts with the bundled fonts (DejaVu Sans), never reading files or the network.
#[derive(Debug)]
pub struct Renderer {
    pub(crate) options: usvg::Options<'static>,
}

impl Renderer {
    fn new() -> Self {
        let mut db = fontdb::Database::new();
        for font in FONTS {
            db.load_font_data(font.to_vec());
        }
        db.set_sans_serif_family("DejaVu Sans");
        let mut options = usvg::Options {
            font_family: "DejaVu Sans".into(),
            fontdb: Arc::new(db),
            ..usvg::Options::default()
        };
        options.image_href_resolver.resolve_string = Box::new(|_, _| None);
        options.image_href_resolver.resolve_data = Box::new(|_, data, _| embedded_image(data));
        Self { options }
    }

    /// The process-wide renderer (fonts are loaded once).
    pub fn shared() -> &'static Renderer {
        static RENDERER: std::sync::OnceLock<Renderer> = std::sync::OnceLock::new();
        RENDERER.get_or_init(Renderer::new)
    }

    /// Parses a filled layout for rendering, holding it to the same limits as an upload and to
    /// the memory budget of a render producing `output_pixels`.
    fn tree(
        &self,
        svg: &str,
        output_pixels: f64,
        deadline: &Deadline,
    ) -> Result<usvg::Tree, LayoutError> {
        limits::check_nesting(svg).map_err(LayoutError::Budget)?;
        let options = roxmltree::ParsingOptions {
            allow_dtd: false,
            nodes_limit: 50_000,
        };
        let doc = roxmltree::Document::parse_with_options(svg, options)
            .map_err(|e| LayoutError::Render(format!("layout does not parse: {e}")))?;
        limits::check_structure(&doc).map_err(LayoutError::Budget)?;
        deadline.check()?;
        let tree = usvg::Tree::from_xmltree(&doc, &self.options)
            .map_err(|e| LayoutError::Render(e.to_string()))?;
        limits::check_tree(&tree, output_pixels).map_err(LayoutError::Budget)?;
        deadline.check()?;
        Ok(tree)
    }

    /// A PNG of one filled side, `width` pixels wide, card proportions, in the production lane
    /// within the time and memory budget of one card ([`crate::limits`]).
    pub fn png(&self, filled: &str, width: u32) -> Result<Vec<u8>, LayoutError> {
        self.png_in(Lane::Production, filled, width)
    }

    /// [`Self::png`] in `lane`.
    pub fn png_in(&self, lane: Lane, filled: &str, width: u32) -> Result<Vec<u8>, LayoutError> {
        self.png_within(lane, limits::TIME_BUDGET, filled, width)
    }

    /// [`Self::png`] with a time budget of its own.
    pub fn png_within(
        &self,
        lane: Lane,
        budget: Duration,
        filled: &str,
        width: u32,
    ) -> Result<Vec<u8>, LayoutError> {
        let filled = filled.to_owned();
        lanes::render_in(lane, budget, move |deadline| {
            Renderer::shared().png_now(&filled, width, deadline)
        })
    }

    pub(crate) fn png_now(
        &self,
        filled: &str,
        width: u32,
        deadline: &Deadline,
    ) -> Result<Vec<u8>, LayoutError> {
        if width == 0 || width > MAX_PNG_WIDTH {
            return Err(LayoutError::Budget(format!(
                "a preview may be 1 to {MAX_PNG_WIDTH} pixels wide, not {width}"
            )));
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "card proportions of a bounded width"
        )]
        let height = (f64::from(width) * f64::from(CARD_HEIGHT_MM) / f64::from(CARD_WIDTH_MM))
            .round() as u32;
        let tree = self.tree(filled, f64::from(width) * f64::from(height), deadline)?;
        let mut pixmap = tiny_skia::Pixmap::new(width, height)
            .ok_or_else(|| LayoutError::Render(format!("cannot make a {width}×{height} image")))?;
        #[allow(clippy::cast_precision_loss, reason = "pixel sizes are small")]
        let transform = tiny_skia::Transform::from_scale(
            width as f32 / tree.size().width(),
            height as f32 / tree.size().height(),
        );
        draw(&tree, transform, &mut pixmap.as_mut(), deadline)?;
        pixmap
            .encode_png()
            .map_err(|e| LayoutError::Render(e.to_string()))
    }

    /// A two-page PDF (front, then back) at ID-1 size with the text as real text, in the
    /// production lane.
    pub fn pdf(&self, front: &str, back: &str) -> Result<Vec<u8>, LayoutError> {
        self.pdf_pages(&[front, back], CARD_WIDTH_MM, CARD_HEIGHT_MM)
    }

    /// A PDF with one page per SVG, each `width_mm` × `height_mm`, text as real text, in the
    /// production lane within the time and memory budget of one card ([`crate::limits`]).
    pub fn pdf_pages(
        &self,
        pages: &[&str],
        width_mm: f32,
        height_mm: f32,
    ) -> Result<Vec<u8>, LayoutError> {
        let pages: Vec<String> = pages.iter().map(|p| (*p).to_owned()).collect();
        lanes::render_in(Lane::Production, limits::TIME_BUDGET, move |deadline| {
            Renderer::shared().pdf_pages_now(&pages, width_mm, height_mm, deadline)
        })
    }

    /// svg2pdf converts a whole page at once, so a page is one step: the structural limits keep
    /// it short, and the deadline is checked before and after each.
    pub(crate) fn pdf_pages_now(
        &self,
        pages: &[String],
        width_mm: f32,
        height_mm: f32,
        deadline: &Deadline,
    ) -> Result<Vec<u8>, LayoutError> {
        let width = width_mm * POINTS_PER_MM;
        let height = height_mm * POINTS_PER_MM;
        let mut alloc = Ref::new(1);
        let catalog = alloc.bump();
        let tree_id = alloc.bump();
        let mut pdf = Pdf::new();
        let mut page_ids = Vec::new();
        let mut chunks = Vec::new();
        for svg in pages {
            deadline.check()?;
            let tree = self.tree(svg, 0.0, deadline)?;
            let (chunk, svg_ref) = svg2pdf::to_chunk(&tree, svg2pdf::ConversionOptions::default())
                .map_err(|e| LayoutError::Render(e.to_string()))?;
            let mut map = HashMap::new();
            let chunk = chunk.renumber(|old| *map.entry(old).or_insert_with(|| alloc.bump()));
            let svg_ref = map
                .get(&svg_ref)
                .copied()
                .ok_or_else(|| LayoutError::Render("lost the page graphic".into()))?;
            let page_id = alloc.bump();
            let content_id = alloc.bump();
            let mut page = pdf.page(page_id);
            page.media_box(Rect::new(0.0, 0.0, width, height));
            page.parent(tree_id);
            page.contents(content_id);
            page.resources().x_objects().pair(Name(b"Card"), svg_ref);
            page.finish();
            let mut content = Content::new();
            content
                .transform([width, 0.0, 0.0, height, 0.0, 0.0])
                .x_object(Name(b"Card"));
            pdf.stream(content_id, &content.finish());
            page_ids.push(page_id);
            chunks.push(chunk);
        }
        pdf.catalog(catalog).pages(tree_id);
        pdf.pages(tree_id)
            .kids(page_ids)
            .count(i32::try_from(pages.len()).unwrap_or(i32::MAX));
        for chunk in &chunks {
            pdf.extend(chunk);
        }
        Ok(pdf.finish())
    }
}

/// Draws a drawing one element at a time, checking the deadline before each, so that a render
/// over its budget stops at the next element.
fn draw(
    tree: &usvg::Tree,
    transform: tiny_skia::Transform,
    pixmap: &mut tiny_skia::PixmapMut,
    deadline: &Deadline,
) -> Result<(), LayoutError> {
    if steppable(tree.root()) {
        draw_children(tree.root(), transform, pixmap, deadline)
    } else {
        resvg::render(tree, transform, pixmap);
        Ok(())
    }
}

/// Whether each child of a group can be drawn on its own. resvg draws a single element only
/// when it has an area (it places the element by it), so a stroked horizontal or vertical line
/// is drawn with its group, in one step; the structural limits keep any group short to draw.
fn steppable(group: &usvg::Group) -> bool {
    group.children().iter().all(|node| match node {
        usvg::Node::Path(path) => {
            node.abs_layer_bounding_box().is_some() || path.stroke().is_none()
        }
        _ => true,
    })
}

/// Draws a group's children one at a time. A group that needs a layer of its own (opacity, a
/// filter, a clip path or a mask) is drawn whole, as one step; any other group is entered, as
/// resvg itself does, with its transform.
fn draw_children(
    group: &usvg::Group,
    transform: tiny_skia::Transform,
    pixmap: &mut tiny_skia::PixmapMut,
    deadline: &Deadline,
) -> Result<(), LayoutError> {
    for node in group.children() {
        deadline.check()?;
        match node {
            usvg::Node::Group(inner) if !inner.should_isolate() && steppable(inner) => {
                draw_children(
                    inner,
                    transform.pre_concat(inner.transform()),
                    pixmap,
                    deadline,
                )?;
            }
            node => {
                // resvg::render_node draws a node at the origin of a layer of its own, moved by
                // its bounding box; moving the transform the other way first puts it in place.
                if let Some(bbox) = node.abs_layer_bounding_box() {
                    resvg::render_node(node, transform.pre_translate(bbox.x(), bbox.y()), pixmap);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{fill, CardFace, TEMPORARY_BACK, TEMPORARY_FRONT};

    #[test]
    fn drawing_one_element_at_a_time_gives_the_same_picture_as_resvg() {
        let layouts = [
            fill(TEMPORARY_FRONT, &CardFace::sample("Temporary card")).unwrap(),
            fill(TEMPORARY_BACK, &CardFace::sample("Temporary card")).unwrap(),
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="856" height="540">
              <defs><path id="p" d="M0 0h40v20h-40z" fill="#e8590c"/></defs>
              <g transform="translate(30 40) rotate(10)"><use href="#p" x="5" y="6"/>
                <g opacity="0.5"><rect width="300" height="100" fill="#1d2b45"/></g>
                <g transform="scale(2)"><circle cx="100" cy="100" r="30" stroke="#000" stroke-width="3"/></g>
                <g transform="translate(0 5)"><line x1="0" y1="300" x2="400" y2="300" stroke="#000"/><rect width="5" height="5"/></g>
              </g>
              <text x="40" y="400" font-size="50">Ada</text>
            </svg>"##
                .to_owned(),
        ];
        let renderer = Renderer::shared();
        for (n, svg) in layouts.iter().enumerate() {
            let far = Deadline::after(Duration::from_mins(10));
            let tree = renderer.tree(svg, 0.0, &far).unwrap();
            // The drawing is one group (the view box's); the back has a line in it, so it is
            // drawn whole, while the others are drawn an element at a time.
            let usvg::Node::Group(view) = &tree.root().children()[0] else {
                panic!("the view box's group")
            };
            assert_eq!(steppable(view), n != 1, "layout {n}");
            let transform = tiny_skia::Transform::from_scale(
                640.0 / tree.size().width(),
                404.0 / tree.size().height(),
            );
            let mut whole = tiny_skia::Pixmap::new(640, 404).unwrap();
            resvg::render(&tree, transform, &mut whole.as_mut());
            let mut stepwise = tiny_skia::Pixmap::new(640, 404).unwrap();
            draw(&tree, transform, &mut stepwise.as_mut(), &far).unwrap();
            let differing = whole
                .pixels()
                .iter()
                .zip(stepwise.pixels())
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(differing, 0, "{differing} pixels differ");
        }
    }
}
