//! `--report FILE`: one HTML page with the run's plots, drawn with plotters (SVG, inlined): throughput over
//! time against the schedule, write and query latency percentiles over time, the full latency distributions
//! (percentile plot, log scale), and the lag probe over time; each SLO is a dashed line on its plot.

use std::fmt::Write;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::stats::{Figures, Slos, Verdict};

/// What one report interval measured.
#[derive(Debug, Clone, Default)]
pub struct Point {
    /// Seconds since the start, at the end of the interval.
    pub t: f64,
    pub scheduled_rate: f64,
    pub acked_rate: f64,
    pub write_p50_ms: f64,
    pub write_p99_ms: f64,
    pub write_max_ms: f64,
    pub query_p99_ms: f64,
    pub lag_max_ms: f64,
    pub errors: u64,
}

impl Point {
    pub fn of(t: f64, secs: f64, f: &Figures) -> Point {
        let ms = |h: &Histogram<u64>, q: f64| {
            if h.is_empty() {
                f64::NAN
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        Point {
            t,
            scheduled_rate: f.scheduled_msgs / secs,
            acked_rate: f.acked_msgs as f64 / secs,
            write_p50_ms: ms(&f.write_us, 0.5),
            write_p99_ms: ms(&f.write_us, 0.99),
            write_max_ms: ms(&f.write_us, 1.0),
            query_p99_ms: ms(&f.query_us, 0.99),
            lag_max_ms: ms(&f.lag_send_us, 1.0),
            errors: f.errors.values().sum(),
        }
    }
}

type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// One line chart as SVG text. `log_y`: a logarithmic y axis (latencies); `slo`: a dashed line at that y.
fn chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_y: bool,
    slo: Option<f64>,
) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 360)).into_drawing_area();
        let _ = draw(&root, title, x_label, y_label, series, log_y, slo);
        let _ = root.present();
    }
    svg
}

fn draw(
    root: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_y: bool,
    slo: Option<f64>,
) -> Result<(), Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    let points = || {
        series
            .iter()
            .flat_map(|s| s.2.iter())
            .filter(|p| p.1.is_finite())
    };
    let x_max = points().map(|p| p.0).fold(1.0, f64::max);
    let x_min = points()
        .map(|p| p.0)
        .fold(x_max, f64::min)
        .min(0.0)
        .max(if log_y { 0.0 } else { f64::MIN });
    let y_top = points()
        .map(|p| p.1)
        .chain(slo)
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.3;
    let mut b = ChartBuilder::on(root);
    b.caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70);
    macro_rules! body {
        ($chart:expr) => {{
            let mut c = $chart;
            c.configure_mesh().x_desc(x_label).y_desc(y_label).draw()?;
            for (name, color, pts) in series {
                let pts: Vec<(f64, f64)> = pts
                    .iter()
                    .copied()
                    .filter(|p| p.1.is_finite() && p.1 > 0.0)
                    .collect();
                let color = *color;
                c.draw_series(LineSeries::new(pts, color.stroke_width(2)))?
                    .label(*name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
            }
            if let Some(limit) = slo {
                c.draw_series(DashedLineSeries::new(
                    vec![(x_min, limit), (x_max, limit)],
                    8,
                    6,
                    RED.stroke_width(1),
                ))?
                .label(format!("SLO {limit}"))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
            }
            c.configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }};
    }
    if log_y {
        let y_low = points()
            .map(|p| p.1)
            .filter(|&y| y > 0.0)
            .fold(y_top, f64::min)
            .max(1e-3)
            / 1.5;
        body!(b.build_cartesian_2d(x_min..x_max, (y_low..y_top).log_scale())?);
    } else {
        body!(b.build_cartesian_2d(x_min..x_max, 0.0..y_top)?);
    }
    Ok(())
}

/// The percentile plot of a histogram: x is 1/(1-q) on a log scale (so p90, p99, p99.9 are evenly spaced), y ms.
fn percentile_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(2)
        .map(|v| {
            (
                v.quantile_iterated_to(),
                v.value_iterated_to() as f64 / 1000.0,
            )
        })
        .filter(|(q, _)| *q < 1.0)
        .map(|(q, ms)| ((1.0 / (1.0 - q)).log10(), ms))
        .collect()
}

/// The whole page.
pub fn html(
    title: &str,
    points: &[Point],
    total: &Figures,
    slos: &Slos,
    verdicts: &[Verdict],
) -> String {
    let col = |f: fn(&Point) -> f64| points.iter().map(|p| (p.t, f(p))).collect::<Vec<_>>();
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:960px}}td,th{{padding:2px 10px;text-align:left}}\
         .pass{{color:#070}}.fail{{color:#b00}}</style></head><body><h1>{title}</h1><table>"
    );
    for v in verdicts {
        let class = if v.pass { "pass" } else { "fail" };
        let _ = write!(
            page,
            "<tr><th>SLO {}</th><td>{}</td><td>limit {}</td><td class=\"{class}\">{}</td></tr>",
            v.name,
            v.measured,
            v.limit,
            if v.pass { "PASS" } else { "FAIL" }
        );
    }
    page.push_str("</table>");
    let charts = [
        chart(
            "Throughput",
            "seconds",
            "messages / s",
            &[
                ("acknowledged", BLUE, col(|p| p.acked_rate)),
                (
                    "scheduled",
                    RGBColor(150, 150, 150),
                    col(|p| p.scheduled_rate),
                ),
            ],
            false,
            None,
        ),
        chart(
            "Latency per interval",
            "seconds",
            "ms (log)",
            &[
                (
                    "write p50",
                    RGBColor(120, 160, 230),
                    col(|p| p.write_p50_ms),
                ),
                ("write p99", BLUE, col(|p| p.write_p99_ms)),
                ("write max", RGBColor(0, 0, 90), col(|p| p.write_max_ms)),
                ("query p99", GREEN, col(|p| p.query_p99_ms)),
            ],
            true,
            slos.judge_queries.then_some(slos.query_p99_ms),
        ),
        chart(
            "Latency distribution (whole run)",
            "percentile: 1 = p90, 2 = p99, 3 = p99.9 (log10 of 1/(1-q))",
            "ms (log)",
            &[
                ("write", BLUE, percentile_points(&total.write_us)),
                ("query", GREEN, percentile_points(&total.query_us)),
            ],
            true,
            slos.judge_queries.then_some(slos.query_p99_ms),
        ),
        chart(
            "Lag probe: send -> visible, max per interval",
            "seconds",
            "ms (log)",
            &[("lag max", MAGENTA, col(|p| p.lag_max_ms))],
            true,
            slos.judge_lag.then_some(slos.lag_ms),
        ),
    ];
    for svg in charts {
        let _ = write!(page, "<div>{svg}</div>");
    }
    page.push_str("</body></html>\n");
    page
}
