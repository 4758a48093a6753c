//! `--report DIR`: `summary.json` and a self-contained `report.html` with inline SVG plots
//! (decision mix over time, score distributions by label, threshold sweep, A/B changes).

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::summary::{DAY, DecisionCounts, Side, Summary, SweepPoint};

type PlotResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Writes `summary.json` and `report.html` into `dir` (created if needed).
pub(super) fn write(dir: &Path, summary: &Summary) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(summary).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("summary.json"), json)?;
    std::fs::write(dir.join("report.html"), html(summary))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

/// The whole page.
fn html(summary: &Summary) -> String {
    let m = &summary.metrics;
    let mut h = String::new();
    let title = m
        .active
        .policy
        .as_ref()
        .map_or("riskgate replay".to_owned(), |p| {
            format!("riskgate replay: {}", p.name)
        });
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}\
         th{{background:#f3f3f3}}td:first-child,th:first-child{{text-align:left}}\
         pre{{background:#f7f7f7;padding:8px;overflow:auto;font-size:12px}}</style></head><body>",
        esc(&title)
    );
    let _ = write!(h, "<h1>{}</h1>", esc(&title));
    let _ = write!(
        h,
        "<p>{} login rows, {} events, {} skipped, {} out of order; {:.1} s ({:.0} events/s).</p>",
        m.rows,
        m.events,
        m.skipped,
        m.out_of_order,
        summary.performance.seconds,
        summary.performance.events_per_second
    );
    side_tables(&mut h, "Active policy", &m.active);
    if let Some(c) = &m.compare {
        side_tables(&mut h, "Compared policy", &c.side);
        ab_section(&mut h, summary);
    }
    let _ = write!(
        h,
        "<h2>Decision mix over time</h2>{}",
        plot_or_note(timeline_svg(summary))
    );
    if m.active.labelled.is_some() {
        let _ = write!(
            h,
            "<h2>Score distributions by label</h2>{}<h2>Threshold sweep</h2>{}",
            plot_or_note(scores_svg(&m.active)),
            plot_or_note(sweep_svg(&m.active))
        );
    }
    h.push_str("</body></html>\n");
    h
}

fn plot_or_note(svg: PlotResult<String>) -> String {
    svg.unwrap_or_else(|e| format!("<p>(plot unavailable: {})</p>", esc(&e.to_string())))
}

fn side_tables(h: &mut String, title: &str, side: &Side) {
    let name = side
        .policy
        .as_ref()
        .map_or("-".to_owned(), |p| format!("{} {}", p.name, p.version));
    let d = &side.decisions;
    let total = d.total().max(1) as f64;
    let _ = write!(
        h,
        "<h2>{title}: <code>{}</code></h2><table><tr><th>decision</th><th>rows</th><th>share</th></tr>",
        esc(&name)
    );
    for (k, n) in [("allow", d.allow), ("mfa", d.mfa), ("lock", d.lock)] {
        let _ = write!(
            h,
            "<tr><td>{k}</td><td>{n}</td><td>{}</td></tr>",
            pct(n as f64 / total)
        );
    }
    h.push_str("</table><table><tr><th>reason</th><th>hits</th></tr>");
    let mut reasons: Vec<_> = side.reasons.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (reason, n) in reasons {
        let _ = write!(h, "<tr><td>{}</td><td>{n}</td></tr>", esc(reason));
    }
    h.push_str("</table>");
    if let (Some(l), Some(q)) = (&side.labelled, &side.quality) {
        h.push_str(
            "<table><tr><th>label \\ decision</th><th>allow</th><th>mfa</th><th>lock</th></tr>",
        );
        for (label, c) in [
            ("attack", l.attack),
            ("  of which takeover", l.takeover),
            ("legitimate", l.legitimate),
            ("  with right password", l.legitimate_success),
        ] {
            let _ = write!(
                h,
                "<tr><td>{label}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                c.allow, c.mfa, c.lock
            );
        }
        for (kind, c) in &l.kinds {
            let _ = write!(
                h,
                "<tr><td>  kind {kind}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                c.rows.allow, c.rows.mfa, c.rows.lock
            );
            if c.takeover.total() > 0 {
                let t = c.takeover;
                let _ = write!(
                    h,
                    "<tr><td>    of which takeover</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    t.allow, t.mfa, t.lock
                );
            }
        }
        let _ = write!(
            h,
            "</table><p>Attack detection (mfa or lock) <b>{}</b>, takeover detection <b>{}</b>; \
             legitimate friction: MFA <b>{}</b>, locked <b>{}</b>.</p>",
            pct(q.detection_rate),
            pct(q.takeover_detection_rate),
            pct(q.friction_mfa),
            pct(q.friction_lock)
        );
        h.push_str("<table><tr><th>target detection</th><th>score threshold</th><th>detection</th><th>takeover detection</th><th>friction</th></tr>");
        for s in &q.suggested {
            let p = &s.at;
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                pct(s.target),
                p.threshold,
                pct(p.detection_rate),
                pct(p.takeover_detection_rate),
                pct(p.friction)
            );
        }
        h.push_str("</table>");
    }
}

fn ab_section(h: &mut String, summary: &Summary) {
    let m = &summary.metrics;
    let Some(c) = &m.compare else { return };
    h.push_str("<h2>A/B: decision changes</h2><table><tr><th>active \\ compare</th><th>allow</th><th>mfa</th><th>lock</th></tr>");
    for (name, row) in ["allow", "mfa", "lock"].iter().zip(c.matrix) {
        let _ = write!(
            h,
            "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            row[0], row[1], row[2]
        );
    }
    h.push_str("</table>");
    if let (Some(a), Some(b)) = (&m.active.quality, &c.side.quality) {
        h.push_str("<table><tr><th>metric</th><th>active</th><th>compare</th><th>delta</th></tr>");
        for (name, x, y) in [
            ("attack detection", a.detection_rate, b.detection_rate),
            (
                "takeover detection",
                a.takeover_detection_rate,
                b.takeover_detection_rate,
            ),
            ("friction: MFA", a.friction_mfa, b.friction_mfa),
            ("friction: locked", a.friction_lock, b.friction_lock),
        ] {
            let _ = write!(
                h,
                "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{:+.2} pp</td></tr>",
                pct(x),
                pct(y),
                100.0 * (y - x)
            );
        }
        h.push_str("</table>");
    }
    let _ = write!(h, "<h3>Changed rows (first {})</h3>", c.samples.len());
    for change in &c.samples {
        let _ = write!(
            h,
            "<details><summary>row {} <code>{}</code> {}: {} {:?} → {} {:?}{}</summary><pre>{}</pre></details>",
            change.row,
            esc(&change.user_id),
            esc(&change.timestamp),
            change.active.decision,
            change.active.reasons,
            change.compare.decision,
            change.compare.reasons,
            change.label.map_or(String::new(), |l| format!(
                " [{}]",
                if l.takeover {
                    "takeover"
                } else if l.attack {
                    "attack"
                } else {
                    "legitimate"
                }
            )),
            esc(&serde_json::to_string_pretty(&change.signals).unwrap_or_default())
        );
    }
}

const SIZE: (u32, u32) = (960, 360);
const GREEN: RGBColor = RGBColor(46, 139, 87);
const ORANGE: RGBColor = RGBColor(230, 145, 30);
const RED: RGBColor = RGBColor(200, 40, 40);
const PURPLE: RGBColor = RGBColor(120, 40, 160);

/// One named line of a chart.
struct Curve {
    name: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// A line chart as an SVG string.
fn line_chart(
    curves: Vec<Curve>,
    x: (f64, f64),
    y: (f64, f64),
    axes: (&str, &str),
    x_label: &dyn Fn(&f64) -> String,
) -> PlotResult<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(x.0..x.1, y.0..y.1)?;
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(x_label)
            .x_desc(axes.0)
            .y_desc(axes.1)
            .draw()?;
        for curve in curves {
            let color = curve.color;
            chart
                .draw_series(LineSeries::new(curve.points, color.stroke_width(2)))?
                .label(curve.name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
        }
        chart.configure_series_labels().border_style(BLACK).draw()?;
        root.present()?;
    }
    Ok(svg)
}

/// Shares of allow / mfa / lock per day.
fn timeline_svg(summary: &Summary) -> PlotResult<String> {
    let days: Vec<_> = summary.metrics.timeline.iter().collect();
    let curve = |name, color, pick: fn(&DecisionCounts) -> u64| Curve {
        name,
        color,
        points: days
            .iter()
            .enumerate()
            .map(|(i, (_, c))| (i as f64, 100.0 * pick(c) as f64 / c.total().max(1) as f64))
            .collect(),
    };
    let curves = vec![
        curve("allow", GREEN, |c| c.allow),
        curve("mfa", ORANGE, |c| c.mfa),
        curve("lock", RED, |c| c.lock),
    ];
    let day = |i: &f64| {
        days.get(*i as usize).map_or(String::new(), |d| {
            let date = crate::signals::rfc3339(d.0 * DAY);
            date.get(..10).unwrap_or(&date).to_owned()
        })
    };
    let last = days.len().saturating_sub(1).max(1) as f64;
    line_chart(
        curves,
        (0.0, last),
        (0.0, 100.0),
        ("day", "% of logins"),
        &day,
    )
}

/// Score histograms (as shares) of attacks, takeovers and legitimate successful logins.
fn scores_svg(side: &Side) -> PlotResult<String> {
    let l = side.labelled.as_ref().ok_or("no labels")?;
    let curve = |name, color, hist: &[u64]| {
        let total = hist.iter().sum::<u64>().max(1) as f64;
        Curve {
            name,
            color,
            points: hist
                .iter()
                .enumerate()
                .map(|(b, &n)| (b as f64 / 100.0, 100.0 * n as f64 / total))
                .collect(),
        }
    };
    let curves = vec![
        curve("attack", RED, &l.attack_scores),
        curve("takeover", PURPLE, &l.takeover_scores),
        curve("legitimate (right password)", GREEN, &l.legitimate_scores),
    ];
    let top = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    let label = |x: &f64| format!("{x:.1}");
    line_chart(
        curves,
        (0.0, 1.0),
        (0.0, top * 1.05),
        ("policy score", "% of rows"),
        &label,
    )
}

/// Detection and friction against the score threshold.
fn sweep_svg(side: &Side) -> PlotResult<String> {
    let q = side.quality.as_ref().ok_or("no labels")?;
    let curve = |name, color, pick: fn(&SweepPoint) -> f64| Curve {
        name,
        color,
        points: q
            .sweep
            .iter()
            .map(|p| (p.threshold, 100.0 * pick(p)))
            .collect(),
    };
    let curves = vec![
        curve("attack detection", RED, |p| p.detection_rate),
        curve("takeover detection", PURPLE, |p| p.takeover_detection_rate),
        curve("legitimate friction", GREEN, |p| p.friction),
    ];
    let label = |x: &f64| format!("{x:.1}");
    line_chart(
        curves,
        (0.0, 1.0),
        (0.0, 100.0),
        ("challenge when score >= threshold", "%"),
        &label,
    )
}
