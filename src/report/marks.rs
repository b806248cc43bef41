//! How each run of a figure is told apart: its [`Look`] (colour, dash pattern, marker) and
//! the drawing of its line and markers in backend coordinates, shared by the chart and the
//! legend. Sizes are in the figure's drawing units (`plot::U` per point).

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::{U, e};

/// A run's look: colour (Okabe–Ito, safe for colour blindness), dash pattern and marker.
#[derive(Clone, Copy)]
pub struct Look {
    pub color: RGBColor,
    /// (dash, gap) in units; (0, 0) is a solid line
    pub dash: (u32, u32),
    pub marker: Marker,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
    Cross,
    InvertedTriangle,
}

/// The look of run `i`: no two of the first six runs share a colour, a marker or (of the
/// first four) a line style.
pub fn look(i: usize) -> Look {
    const COLORS: [RGBColor; 6] = [
        RGBColor(0, 114, 178),
        RGBColor(213, 94, 0),
        RGBColor(0, 158, 115),
        RGBColor(204, 121, 167),
        RGBColor(230, 159, 0),
        RGBColor(86, 180, 233),
    ];
    const DASHES: [(u32, u32); 4] = [(0, 0), (10, 5), (2, 4), (18, 6)];
    const MARKERS: [Marker; 6] = [
        Marker::Circle,
        Marker::Square,
        Marker::Triangle,
        Marker::Diamond,
        Marker::Cross,
        Marker::InvertedTriangle,
    ];
    Look {
        color: COLORS[i % COLORS.len()],
        dash: DASHES[i % DASHES.len()],
        marker: MARKERS[i % MARKERS.len()],
    }
}

/// A run's line through backend points, in its dash pattern.
pub fn line<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    pts: &[(i32, i32)],
    lk: Look,
) -> Result<(), String> {
    let style = lk.color.stroke_width((3 * U / 4) as u32 + 1);
    if lk.dash == (0, 0) {
        area.draw(&PathElement::new(pts.to_vec(), style)).map_err(e)
    } else {
        area.draw(&DashedPathElement::new(
            pts.iter().copied(),
            lk.dash.0,
            lk.dash.1,
            style,
        ))
        .map_err(e)
    }
}

/// A run's marker centred at `at` (backend coordinates); open markers are filled white.
pub fn marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (x, y): (i32, i32),
    lk: Look,
) -> Result<(), String> {
    let r = 5 * U / 2;
    let c = lk.color;
    let stroke = c.stroke_width(U as u32);
    let white = WHITE.filled();
    match lk.marker {
        Marker::Circle => area.draw(&Circle::new((x, y), r, c.filled())).map_err(e),
        Marker::Square => {
            let rr = r - 1;
            area.draw(&Rectangle::new([(x - rr, y - rr), (x + rr, y + rr)], white))
                .map_err(e)?;
            area.draw(&Rectangle::new(
                [(x - rr, y - rr), (x + rr, y + rr)],
                stroke,
            ))
            .map_err(e)
        }
        Marker::Triangle | Marker::InvertedTriangle => {
            let s = if lk.marker == Marker::Triangle { 1 } else { -1 };
            let pts = vec![
                (x, y - s * r),
                (x - r, y + s * r * 4 / 5),
                (x + r, y + s * r * 4 / 5),
            ];
            area.draw(&Polygon::new(pts, c.filled())).map_err(e)
        }
        Marker::Diamond => {
            let pts = vec![(x, y - r), (x + r, y), (x, y + r), (x - r, y)];
            area.draw(&Polygon::new(pts.clone(), white)).map_err(e)?;
            let mut ring = pts.clone();
            ring.push(pts[0]);
            area.draw(&PathElement::new(ring, stroke)).map_err(e)
        }
        Marker::Cross => {
            let k = r - 1;
            area.draw(&PathElement::new(
                vec![(x - k, y - k), (x + k, y + k)],
                stroke,
            ))
            .map_err(e)?;
            area.draw(&PathElement::new(
                vec![(x - k, y + k), (x + k, y - k)],
                stroke,
            ))
            .map_err(e)
        }
    }
}
