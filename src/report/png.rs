//! PNG copies of the report's SVG figures: the SVG rendered by resvg at 300 dpi with the
//! system's fonts (loaded once; the generic `sans-serif` of the SVG maps to the first of a
//! few common sans families found). It renders what `plot` drew and nothing else. Built with
//! the `png` feature (default); without it there is no PNG ([`ENABLED`] is false).

#[cfg(feature = "png")]
use std::sync::{Arc, OnceLock};

#[cfg(feature = "png")]
use resvg::{tiny_skia, usvg};

/// Whether this build writes PNG files.
pub const ENABLED: bool = cfg!(feature = "png");

/// Without the `png` feature: no PNG.
#[cfg(not(feature = "png"))]
pub fn render(_svg: &str) -> Result<Vec<u8>, String> {
    Err("this distill was built without the `png` feature".into())
}

/// Pixels per inch of the PNG (the SVG declares its size in inches).
#[cfg(feature = "png")]
pub const DPI: f32 = 300.0;

/// Sans families tried, in order, for the SVG's `sans-serif`.
#[cfg(feature = "png")]
const SANS: [&str; 6] = [
    "DejaVu Sans",
    "Liberation Sans",
    "Arial",
    "Helvetica",
    "Noto Sans",
    "FreeSans",
];

/// Where Debian/Ubuntu, Fedora and Arch put DejaVu Sans.
#[cfg(feature = "png")]
const DEJAVU: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

#[cfg(feature = "png")]
fn fonts() -> Arc<usvg::fontdb::Database> {
    static DB: OnceLock<Arc<usvg::fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = usvg::fontdb::Database::new();
        // the usual places of DejaVu Sans first: reading every system font costs more than
        // drawing the three figures
        for f in DEJAVU {
            let _ = db.load_font_file(f);
        }
        if db.is_empty() {
            db.load_system_fonts();
        }
        let has = |name: &str| {
            db.faces()
                .any(|f| f.families.iter().any(|(fam, _)| fam == name))
        };
        if let Some(sans) = SANS.iter().find(|s| has(s)) {
            db.set_sans_serif_family(*sans);
        }
        Arc::new(db)
    })
    .clone()
}

/// The PNG of an SVG document (white background); an error when it has no text font at all
/// (its labels would be missing) or cannot be parsed.
#[cfg(feature = "png")]
pub fn render(svg: &str) -> Result<Vec<u8>, String> {
    let fontdb = fonts();
    if fontdb.is_empty() && svg.contains("<text") {
        return Err("no system font found to draw its text (install e.g. fonts-dejavu)".into());
    }
    let opt = usvg::Options {
        fontdb,
        ..Default::default()
    };
    let tree = usvg::Tree::from_str(svg, &opt).map_err(|e| format!("reading the SVG: {e}"))?;
    // usvg sizes the tree at 96 px per inch
    let scale = DPI / 96.0;
    let size = tree.size();
    let (w, h) = (
        (size.width() * scale).ceil() as u32,
        (size.height() * scale).ceil() as u32,
    );
    let mut pixmap =
        tiny_skia::Pixmap::new(w, h).ok_or_else(|| format!("cannot make a {w}×{h} image"))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().map_err(|e| format!("encoding: {e}"))
}
