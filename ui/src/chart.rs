//! Charts drawn by Warrant itself: inline SVG built from numbers only (no text from
//! upstreams or agents goes in; the table next to each chart names things), styled
//! with presentation attributes (no inline CSS, no scripts, no fonts from elsewhere).

use std::fmt::Write;

/// Width and height of the drawing, in its own units (it scales to the page).
const W: f64 = 720.0;
const H: f64 = 220.0;
/// Room for the axis labels.
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 8.0;
/// Room for the last step's label.
const RIGHT: f64 = 28.0;

const BLUE: &str = "#0b57d0";
const RED: &str = "#b3261e";
const GREY: &str = "#57606a";
const LINE: &str = "#d0d7de";
const WHITE: &str = "#ffffff";
const FG: &str = "#1b1f24";

/// A bar per step, allowed calls below refusals; `labels` under some of the bars.
pub(crate) fn calls(title: &str, allowed: &[u64], refused: &[u64], labels: &[String]) -> String {
    let n = allowed.len().max(1);
    let top = allowed
        .iter()
        .zip(refused)
        .map(|(a, r)| a + r)
        .max()
        .unwrap_or(0)
        .max(1);
    let (scale, ticks) = axis(top as f64);
    let mut svg = open(title);
    grid(&mut svg, scale, &ticks, |v| format!("{v:.0}"));
    let slot = (W - LEFT - RIGHT) / n as f64;
    let bar = (slot * 0.8).max(1.0);
    for (i, (a, r)) in allowed.iter().zip(refused).enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
        let ha = (*a as f64) / scale * (H - TOP - BOTTOM);
        let hr = (*r as f64) / scale * (H - TOP - BOTTOM);
        let base = H - BOTTOM;
        if ha > 0.0 {
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{ha:.1}" fill="{BLUE}"/>"#,
                base - ha
            );
        }
        if hr > 0.0 {
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{hr:.1}" fill="{RED}"/>"#,
                base - ha - hr
            );
        }
    }
    x_labels(&mut svg, labels, slot);
    svg.push_str("</svg>");
    svg
}

/// Lines of latency percentiles (µs) per step: p50, p95, p99; a step without calls
/// breaks the lines.
pub(crate) fn latency(title: &str, series: [&[Option<u64>]; 3], labels: &[String]) -> String {
    let n = series[0].len().max(1);
    let top = series
        .iter()
        .flat_map(|s| s.iter().flatten())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1000) as f64
        / 1000.0;
    let (scale, ticks) = axis(top);
    let mut svg = open(title);
    grid(&mut svg, scale, &ticks, |v| format!("{v} ms"));
    let slot = (W - LEFT - RIGHT) / n as f64;
    for (values, (color, dash)) in series.iter().zip([(BLUE, ""), (GREY, "4 3"), (RED, "2 2")]) {
        let mut path = String::new();
        let mut pen_down = false;
        for (i, v) in values.iter().enumerate() {
            let Some(us) = v else {
                pen_down = false;
                continue;
            };
            let x = LEFT + slot * (i as f64 + 0.5);
            let y = H - BOTTOM - (*us as f64 / 1000.0) / scale * (H - TOP - BOTTOM);
            let _ = write!(path, "{}{x:.1} {y:.1} ", if pen_down { "L" } else { "M" });
            // A dot at each step: a step alone, between gaps, is seen too.
            let _ = write!(
                svg,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{color}"/>"#
            );
            pen_down = true;
        }
        if !path.is_empty() {
            let _ = write!(
                svg,
                r#"<path d="{}" fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/>"#,
                path.trim_end()
            );
        }
    }
    x_labels(&mut svg, labels, slot);
    svg.push_str("</svg>");
    svg
}

/// A horizontal bar `value` of `max` wide, for a table cell.
pub(crate) fn bar(value: u64, max: u64, refused: u64) -> String {
    let max = max.max(1) as f64;
    let wa = 120.0 * value as f64 / max;
    let wr = 120.0 * refused as f64 / max;
    format!(
        r#"<svg viewBox="0 0 120 10" width="120" height="10" aria-hidden="true"><rect width="{wa:.1}" height="10" fill="{BLUE}"/><rect x="{wa:.1}" width="{wr:.1}" height="10" fill="{RED}"/></svg>"#
    )
}

/// A link between two nodes of [`graph`]: from node `from` of column `column` to node
/// `to` of the next column, carrying `calls` (of which `refused` were refused).
pub(crate) struct Link {
    pub column: usize,
    pub from: usize,
    pub to: usize,
    pub calls: u64,
    pub refused: u64,
}

/// Three columns of named nodes (people, agents, servers) and the links between
/// neighbouring columns. Names come from people, agents and upstreams: each is escaped,
/// as text.
pub(crate) fn graph(title: &str, columns: [&[String]; 3], links: &[Link]) -> String {
    let rows = columns.iter().map(|c| c.len()).max().unwrap_or(1).max(1);
    let height = (rows as f64 * 28.0 + 16.0).max(80.0);
    let x = [16.0, 260.0, 504.0];
    let y = |column: usize, i: usize| {
        let n = columns[column].len().max(1) as f64;
        let gap = height / n;
        gap * (i as f64 + 0.5)
    };
    let busiest = links
        .iter()
        .map(|l| l.calls + l.refused)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut svg = format!(
        r#"<svg class="chart" viewBox="0 0 {W} {height:.0}" role="img" aria-label="{title}"><title>{title}</title>"#
    );
    for link in links {
        let (x1, x2) = (x[link.column] + 200.0, x[link.column + 1]);
        let (y1, y2) = (y(link.column, link.from), y(link.column + 1, link.to));
        let total = (link.calls + link.refused) as f64;
        let width = 1.0 + 7.0 * (total / busiest).sqrt();
        let color = if link.refused > 0 { RED } else { BLUE };
        let _ = write!(
            svg,
            r#"<path d="M{x1:.1} {y1:.1} C{:.1} {y1:.1} {:.1} {y2:.1} {x2:.1} {y2:.1}" fill="none" stroke="{color}" stroke-opacity="0.6" stroke-width="{width:.1}"/>"#,
            x1 + 30.0,
            x2 - 30.0
        );
    }
    for (column, names) in columns.iter().enumerate() {
        for (i, name) in names.iter().enumerate() {
            let (nx, ny) = (x[column], y(column, i));
            let short: String = if name.chars().count() > 30 {
                name.chars().take(29).chain(std::iter::once('…')).collect()
            } else {
                name.clone()
            };
            let _ = write!(
                svg,
                r#"<rect x="{nx:.1}" y="{:.1}" width="200" height="22" rx="4" fill="{WHITE}" stroke="{LINE}"/><text x="{:.1}" y="{:.1}" font-size="12" fill="{FG}">{}</text>"#,
                ny - 11.0,
                nx + 6.0,
                ny + 4.0,
                escape(&short)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn open(title: &str) -> String {
    // The title is ours (a fixed phrase), never an upstream's or an agent's text.
    format!(
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{title}"><title>{title}</title>"#
    )
}

/// A round top for the axis, and the ticks up to it.
fn axis(max: f64) -> (f64, Vec<f64>) {
    let magnitude = 10f64.powf(max.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| max / s <= 5.0)
        .unwrap_or(magnitude * 10.0);
    let top = (max / step).ceil() * step;
    let ticks = (0..=((top / step).round() as usize))
        .map(|i| i as f64 * step)
        .collect();
    (top, ticks)
}

fn grid(svg: &mut String, scale: f64, ticks: &[f64], label: impl Fn(f64) -> String) {
    for t in ticks {
        let y = H - BOTTOM - t / scale * (H - TOP - BOTTOM);
        let _ = write!(
            svg,
            r#"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{LINE}"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="{GREY}">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            label(*t)
        );
    }
}

/// Every so many step labels, so that they do not overlap.
fn x_labels(svg: &mut String, labels: &[String], slot: f64) {
    let every = ((60.0 / slot).ceil() as usize).max(1);
    for (i, label) in labels.iter().enumerate().filter(|(i, _)| i % every == 0) {
        let x = LEFT + slot * (i as f64 + 0.5);
        let _ = write!(
            svg,
            r#"<text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="{GREY}">{}</text>"#,
            H - 6.0,
            escape(label)
        );
    }
}

/// Text for SVG: `&`, `<`, `>` and quotes escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_round_and_drawings_hold_no_markup_but_their_own() {
        assert_eq!(axis(7.0).0, 8.0);
        assert_eq!(axis(130.0).0, 200.0);
        assert_eq!(axis(1.0).1, vec![0.0, 1.0]);
        let svg = calls(
            "Calls",
            &[3, 0, 5],
            &[1, 0, 0],
            &["<b>".into(), "b".into(), "c".into()],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(!svg.contains("<b>") && svg.contains("&lt;b&gt;"));
        assert_eq!(
            svg.matches("<rect").count(),
            3,
            "two allowed bars, one refused"
        );
        let lines = latency(
            "Latency",
            [&[Some(1000), None, Some(3000)], &[None; 3], &[None; 3]],
            &[],
        );
        assert_eq!(lines.matches("<path").count(), 1);
        let d = &lines[lines.find("d=\"").expect("a path") + 3..];
        let d = &d[..d.find('"').expect("its end")];
        assert_eq!(d.matches('M').count(), 2, "a gap breaks the line: {d}");
        assert!(!d.contains('L'), "{d}");
        let names = ["<script>x</script>".to_owned()];
        let g = graph(
            "Graph",
            [&names, &names, &names],
            &[Link {
                column: 0,
                from: 0,
                to: 0,
                calls: 3,
                refused: 1,
            }],
        );
        assert!(!g.contains("<script>") && g.contains("&lt;script&gt;"));
    }
}
