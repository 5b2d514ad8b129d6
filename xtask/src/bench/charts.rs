//! PNG charts of a run, drawn with plotters: IOPS side by side per workload, and the
//! latency percentiles of every side per workload. Text is drawn with a TrueType
//! font read at run time (DejaVu Sans from Debian's fonts-dejavu-core, or the first
//! of a few common fonts), so xtask links no system font library.

use super::report::{Report, Side};
use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use std::path::Path;

const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
];

/// Registers a font for plotters' "sans-serif", once.
fn font() -> Result<()> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let path = FONTS
            .iter()
            .find(|p| Path::new(p).is_file())
            .ok_or_else(|| {
                format!(
                    "no font found (tried {}); install fonts-dejavu-core",
                    FONTS.join(", ")
                )
            })?;
        let bytes: &'static [u8] = Box::leak(
            std::fs::read(path)
                .map_err(|e| format!("{path}: {e}"))?
                .into_boxed_slice(),
        );
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{path} is not a font plotters can use"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

fn color(side: Side) -> RGBColor {
    match side {
        Side::Ceiling => RGBColor(120, 120, 120),
        Side::TgtGlfs => RGBColor(230, 140, 40),
        Side::TgtFuse => RGBColor(240, 200, 80),
        Side::OursGlfs => RGBColor(30, 110, 200),
        Side::TgtNull => RGBColor(200, 80, 60),
        Side::OursMemory => RGBColor(40, 160, 90),
        Side::TgtTmpfs => RGBColor(150, 90, 170),
    }
}

/// The x position of percentile `p` on a "nines" axis: 50 -> 0.3, 90 -> 1,
/// 99 -> 2, 99.9 -> 3.
pub fn nines(p: f64) -> f64 {
    -(1.0 - (p / 100.0).min(0.99999)).log10()
}

/// The percentile at a nines position (the inverse of [`nines`]), for axis labels.
pub fn percentile_at(x: f64) -> f64 {
    (1.0 - 10f64.powf(-x)) * 100.0
}

/// Bars of (side, IOPS) per workload; workloads without any number are left out.
pub fn bar_groups(report: &Report, sides: &[Side]) -> Vec<(String, Vec<(Side, f64)>)> {
    report
        .workloads
        .iter()
        .map(|w| {
            let bars: Vec<(Side, f64)> = sides
                .iter()
                .filter_map(|&s| w.get(s).iops().map(|i| (s, i)))
                .collect();
            (w.label.clone(), bars)
        })
        .filter(|(_, bars)| !bars.is_empty())
        .collect()
}

/// IOPS side by side: one panel of bars per workload (each with its own scale, since
/// 1 MiB and 4 KiB commands differ a hundredfold), glfs sides then protocol-only ones.
pub fn iops_chart(report: &Report, path: &Path) -> Result<()> {
    font()?;
    let mut sides: Vec<Side> = Side::GLFS.to_vec();
    sides.extend(Side::MEMORY);
    let groups = bar_groups(report, &sides);
    if groups.is_empty() {
        bail!("no IOPS to draw");
    }
    let cols = 4usize.min(groups.len());
    let rows = groups.len().div_ceil(cols);
    let root =
        BitMapBackend::new(path, (360 * cols as u32, 300 * rows as u32 + 40)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(40);
    title.titled(
        &format!(
            "IOPS per workload (each side's median run of {} round{}; higher is better)",
            report.rounds,
            if report.rounds == 1 { "" } else { "s" }
        ),
        ("sans-serif", 22),
    )?;
    for (area, (label, bars)) in body.split_evenly((rows, cols)).iter().zip(&groups) {
        // Headroom above the bars for the legend.
        let top = bars.iter().map(|b| b.1).fold(0.0, f64::max) * 1.8;
        let mut chart = ChartBuilder::on(area)
            .caption(label, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(10)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..bars.len() as f64, 0.0..top.max(1.0))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_label_formatter(&|v| super::report::iops(*v))
            .draw()?;
        for (i, (side, v)) in bars.iter().enumerate() {
            let x = i as f64;
            let c = color(*side);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x + 0.1, 0.0), (x + 0.9, *v)],
                    c.filled(),
                )))?
                .label(side.name())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
            chart.draw_series(std::iter::once(Text::new(
                super::report::iops(*v),
                (x + 0.15, *v + top * 0.02),
                ("sans-serif", 12),
            )))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 11))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Latency percentiles: one panel per workload, a line per side, percentile on a
/// "nines" axis and microseconds on a log axis.
pub fn latency_chart(report: &Report, path: &Path) -> Result<()> {
    font()?;
    let panels: Vec<_> = report
        .workloads
        .iter()
        .filter(|w| {
            w.sides
                .iter()
                .any(|(_, m)| m.numbers().is_some_and(|n| !n.percentiles.is_empty()))
        })
        .collect();
    if panels.is_empty() {
        bail!("no latency percentiles to draw");
    }
    let cols = 4usize.min(panels.len());
    let rows = panels.len().div_ceil(cols);
    let root =
        BitMapBackend::new(path, (380 * cols as u32, 300 * rows as u32 + 40)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(40);
    title.titled(
        "Latency percentiles in microseconds (lower is better)",
        ("sans-serif", 22),
    )?;
    for (area, w) in body.split_evenly((rows, cols)).iter().zip(&panels) {
        let series: Vec<(Side, Vec<(f64, f64)>)> = w
            .sides
            .iter()
            .filter_map(|(s, m)| {
                let pts: Vec<(f64, f64)> = m
                    .numbers()?
                    .percentiles
                    .iter()
                    .filter(|p| p[0] >= 10.0 && p[1] > 0.0)
                    .map(|p| (nines(p[0]), p[1]))
                    .collect();
                (!pts.is_empty()).then_some((*s, pts))
            })
            .collect();
        let lo = series
            .iter()
            .flat_map(|s| s.1.iter().map(|p| p.1))
            .fold(f64::MAX, f64::min);
        let hi = series
            .iter()
            .flat_map(|s| s.1.iter().map(|p| p.1))
            .fold(0.0, f64::max);
        let mut chart = ChartBuilder::on(area)
            .caption(&w.label, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(55)
            .build_cartesian_2d(
                nines(10.0)..nines(99.99),
                ((lo * 0.8).max(0.1)..hi * 1.25).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_labels(5)
            .x_label_formatter(&|x| format!("p{}", trim(percentile_at(*x))))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()?;
        for (side, pts) in series {
            let c = color(side);
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))?
                .label(side.name())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", 11))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `99.9`, `50`, `99.99` for axis labels.
fn trim(p: f64) -> String {
    let s = format!("{p:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_axis_round_trips() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.0) - 2.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        for p in [10.0, 50.0, 99.5, 99.99] {
            assert!((percentile_at(nines(p)) - p).abs() < 1e-6, "{p}");
        }
        assert_eq!(trim(99.9), "99.9");
        assert_eq!(trim(50.0), "50");
    }
}
