//! `curve.svg`: takeover detection against legitimate friction, one curve per policy.

use plotters::prelude::*;

use crate::policies::{POLICIES, label};
use crate::{Measure, Run};

/// A panel: what it shows, how it reads a measure, and the detection aimed at.
struct Panel {
    title: &'static str,
    detection: fn(&Measure) -> f64,
    aim: f64,
}

const PANELS: [Panel; 2] = [
    Panel {
        title: "targeted takeovers",
        detection: |m| m.targeted,
        aim: 0.95,
    },
    Panel {
        title: "far-away takeovers",
        detection: |m| m.travel,
        aim: 0.99,
    },
];
/// Most legitimate friction aimed at.
const FRICTION_AIM: f64 = 0.05;
/// One colour per policy of [`POLICIES`].
const COLOURS: [RGBColor; 3] = [
    RGBColor(200, 40, 40),
    RGBColor(46, 110, 190),
    RGBColor(46, 139, 87),
];
const GREY: RGBColor = RGBColor(150, 150, 150);

/// The plot of `means` as an SVG document.
pub(crate) fn svg(means: &[Run]) -> Result<String, Box<dyn std::error::Error>> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, 460)).into_drawing_area();
        root.fill(&WHITE)?;
        let widest = means
            .iter()
            .map(|r| r.measure.friction())
            .fold(FRICTION_AIM, f64::max);
        let x_max = 100.0 * widest * 1.1;
        for (area, panel) in root.split_evenly((1, 2)).iter().zip(&PANELS) {
            let mut chart = ChartBuilder::on(area)
                .caption(panel.title, ("sans-serif", 20))
                .margin(14)
                .x_label_area_size(44)
                .y_label_area_size(54)
                .build_cartesian_2d(0.0..x_max, 0.0..100.0)?;
            chart
                .configure_mesh()
                .x_desc("legitimate successful logins challenged (MFA or lock), %")
                .y_desc("takeovers stepped up or locked, %")
                .draw()?;
            let aims = [
                vec![(100.0 * FRICTION_AIM, 0.0), (100.0 * FRICTION_AIM, 100.0)],
                vec![(0.0, 100.0 * panel.aim), (x_max, 100.0 * panel.aim)],
            ];
            for aim in aims {
                chart.draw_series(LineSeries::new(aim, GREY.stroke_width(1)))?;
            }
            // Drawn last, the lone point of the rules-only policy stays visible on the curve.
            let mut labels = Labels::default();
            for (policy, colour) in POLICIES.iter().zip(COLOURS).rev() {
                let mut runs: Vec<&Run> =
                    means.iter().filter(|r| r.policy == policy.name).collect();
                let at = |r: &Run| {
                    (
                        100.0 * r.measure.friction(),
                        100.0 * (panel.detection)(&r.measure),
                    )
                };
                let radius = if runs.len() == 1 { 7 } else { 3 };
                chart
                    .draw_series(LineSeries::new(
                        runs.iter().map(|r| at(r)),
                        colour.stroke_width(2),
                    ))?
                    .label(policy.name)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour));
                chart.draw_series(
                    runs.iter()
                        .map(|r| Circle::new(at(r), radius, colour.stroke_width(2))),
                )?;
                if runs.len() == 1 {
                    continue;
                }
                // The shipped setting is labelled first, so it always is.
                runs.sort_by_key(|r| !r.shipped);
                let font = ("sans-serif", 12).into_font().color(&colour);
                for run in runs {
                    let (x, y) = at(run);
                    if labels.free(x / x_max, y / 100.0) {
                        let mut text = label(run.setting);
                        if run.shipped {
                            text += " (shipped)";
                        }
                        let text = Text::new(text, (6, 6), font.clone());
                        chart.draw_series([EmptyElement::at((x, y)) + text])?;
                    }
                }
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE)
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
    }
    Ok(svg)
}

/// Where a panel's threshold labels went, as shares of the axes: one too close to another
/// is left out.
#[derive(Default)]
struct Labels(Vec<(f64, f64)>);

impl Labels {
    /// Whether a label fits at `(x, y)`; if so, it is taken.
    fn free(&mut self, x: f64, y: f64) -> bool {
        let clear = (self.0.iter()).all(|&(a, b)| (x - a).abs() > 0.07 || (y - b).abs() > 0.035);
        if clear {
            self.0.push((x, y));
        }
        clear
    }
}
