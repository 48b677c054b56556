//! Results of `bench fanout`: one [`Point`] per (shards, subscribers), printed as a
//! `key=value` line, written as CSV rows, and plotted as a PNG.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

/// One measured point of the sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub shards: u32,
    pub subscribers: usize,
    pub bitrate_mbps: f64,
    pub seconds: f64,
    pub pps_per_core: f64,
    pub mbps_per_core: f64,
    pub ceiling_pps_per_core: f64,
    pub ceiling_method: String,
    /// pps_per_core / ceiling_pps_per_core.
    pub ratio: f64,
    /// Fraction of the media fragments numbered for the subscribers that arrived.
    pub delivered: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub latency_samples: usize,
    pub datagrams: u64,
    pub tap_drops: u64,
    /// CPU the server process used during the window, in cores (from /proc).
    pub server_cores: f64,
}

const COLUMNS: [&str; 16] = [
    "shards",
    "subscribers",
    "bitrate_mbps",
    "seconds",
    "pps_per_core",
    "mbps_per_core",
    "ceiling_pps_per_core",
    "ceiling_method",
    "ratio",
    "delivered",
    "p50_ms",
    "p99_ms",
    "latency_samples",
    "datagrams",
    "tap_drops",
    "server_cores",
];

impl Point {
    fn values(&self) -> [String; 16] {
        [
            self.shards.to_string(),
            self.subscribers.to_string(),
            format!("{:.3}", self.bitrate_mbps),
            format!("{:.2}", self.seconds),
            format!("{:.0}", self.pps_per_core),
            format!("{:.1}", self.mbps_per_core),
            format!("{:.0}", self.ceiling_pps_per_core),
            self.ceiling_method.clone(),
            format!("{:.3}", self.ratio),
            format!("{:.4}", self.delivered),
            format!("{:.2}", self.p50_ms),
            format!("{:.2}", self.p99_ms),
            self.latency_samples.to_string(),
            self.datagrams.to_string(),
            self.tap_drops.to_string(),
            format!("{:.2}", self.server_cores),
        ]
    }

    /// The one-line `key=value` summary (space separated, no spaces in values).
    pub fn summary_line(&self) -> String {
        let mut s = String::new();
        for (k, v) in COLUMNS.iter().zip(self.values()) {
            if !s.is_empty() {
                s.push(' ');
            }
            let _ = write!(s, "{k}={v}");
        }
        s
    }

    /// Parses a line [`Point::summary_line`] wrote (keys in any order).
    pub fn parse_summary(line: &str) -> Option<Point> {
        let get = |key: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        };
        let f = |key: &str| get(key)?.parse::<f64>().ok();
        Some(Point {
            shards: get("shards")?.parse().ok()?,
            subscribers: get("subscribers")?.parse().ok()?,
            bitrate_mbps: f("bitrate_mbps")?,
            seconds: f("seconds")?,
            pps_per_core: f("pps_per_core")?,
            mbps_per_core: f("mbps_per_core")?,
            ceiling_pps_per_core: f("ceiling_pps_per_core")?,
            ceiling_method: get("ceiling_method")?.to_owned(),
            ratio: f("ratio")?,
            delivered: f("delivered")?,
            p50_ms: f("p50_ms")?,
            p99_ms: f("p99_ms")?,
            latency_samples: get("latency_samples")?.parse().ok()?,
            datagrams: get("datagrams")?.parse().ok()?,
            tap_drops: get("tap_drops")?.parse().ok()?,
            server_cores: f("server_cores")?,
        })
    }
}

/// The CSV text: a header row, then one row per point.
pub fn csv(points: &[Point]) -> String {
    let mut out = COLUMNS.join(",");
    out.push('\n');
    for p in points {
        out.push_str(&p.values().join(","));
        out.push('\n');
    }
    out
}

/// Fonts tried for the plot's text (Debian's fonts-dejavu-core first).
const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Registers a system TTF for plotters' ab_glyph text; false if none is installed
/// (the plot is then drawn without text).
fn register_font() -> bool {
    for path in FONTS {
        if let Ok(bytes) = std::fs::read(path) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font(
                "sans-serif",
                plotters::style::FontStyle::Normal,
                bytes,
            )
            .is_ok()
            {
                return true;
            }
        }
    }
    false
}

/// Two panels side by side: subscribers (log scale) against packets/s per core, with
/// the kernel ceiling dashed, and against p99 latency; one line per shard count.
pub fn plot(points: &[Point], path: &Path) -> Result<bool> {
    use plotters::prelude::*;
    let text = register_font();
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    let n_min = points
        .iter()
        .map(|p| p.subscribers)
        .min()
        .unwrap_or(1)
        .max(1) as f64;
    let n_max = points
        .iter()
        .map(|p| p.subscribers)
        .max()
        .unwrap_or(10)
        .max(2) as f64;
    let x_range = (n_min / 1.5)..(n_max * 1.5);
    let mut shards: Vec<u32> = points.iter().map(|p| p.shards).collect();
    shards.sort_unstable();
    shards.dedup();
    let colors = [BLUE, RED, GREEN, MAGENTA];
    let pps_max = points
        .iter()
        .map(|p| p.pps_per_core.max(p.ceiling_pps_per_core))
        .fold(1.0, f64::max)
        * 1.15;
    let p99_max = points.iter().map(|p| p.p99_ms).fold(1.0, f64::max) * 1.15;
    let panels: [(&DrawingArea<_, _>, &str, f64); 2] = [
        (&left, "packets/s per server core", pps_max),
        (&right, "p99 latency (ms)", p99_max),
    ];
    for (i, (area, y_label, y_max)) in panels.into_iter().enumerate() {
        let mut b = ChartBuilder::on(area);
        b.margin(15);
        if text {
            b.caption(y_label, ("sans-serif", 20))
                .x_label_area_size(35)
                .y_label_area_size(70);
        }
        let mut chart = b.build_cartesian_2d(x_range.clone().log_scale(), 0.0..y_max)?;
        let mut mesh = chart.configure_mesh();
        mesh.x_desc("subscribers")
            .x_labels(6)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"));
        if !text {
            mesh.disable_x_mesh().disable_y_mesh();
        }
        mesh.draw()?;
        for (k, s) in shards.iter().enumerate() {
            let color = colors[k % colors.len()];
            let mut line: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.shards == *s)
                .map(|p| {
                    (
                        p.subscribers as f64,
                        if i == 0 { p.pps_per_core } else { p.p99_ms },
                    )
                })
                .collect();
            line.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart
                .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
                .label(format!("{s} shard{}", if *s == 1 { "" } else { "s" }))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
            chart.draw_series(line.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        }
        if i == 0 {
            let mut ceiling: Vec<(f64, f64)> = points
                .iter()
                .map(|p| (p.subscribers as f64, p.ceiling_pps_per_core))
                .collect();
            ceiling.sort_by(|a, b| a.0.total_cmp(&b.0));
            ceiling.dedup_by(|a, b| {
                a.0 == b.0 && {
                    b.1 = b.1.max(a.1);
                    true
                }
            });
            chart
                .draw_series(LineSeries::new(ceiling, BLACK.stroke_width(1)))?
                .label("kernel ceiling, 1 core")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK));
        }
        if text {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point() -> Point {
        Point {
            shards: 2,
            subscribers: 1000,
            bitrate_mbps: 3.5,
            seconds: 5.0,
            pps_per_core: 151_234.0,
            mbps_per_core: 1400.5,
            ceiling_pps_per_core: 460_000.0,
            ceiling_method: "sendmmsg-unconnected-b64".into(),
            ratio: 0.329,
            delivered: 0.9987,
            p50_ms: 1.25,
            p99_ms: 12.5,
            latency_samples: 4242,
            datagrams: 1_512_340,
            tap_drops: 3,
            server_cores: 1.97,
        }
    }

    #[test]
    fn summary_line_round_trips() {
        let p = point();
        let line = p.summary_line();
        assert!(line.starts_with("shards=2 subscribers=1000 "), "{line}");
        for key in [
            "pps_per_core=",
            "ceiling_pps_per_core=",
            "ceiling_method=",
            "ratio=",
            "delivered=",
            "p99_ms=",
        ] {
            assert!(line.contains(key), "{key} missing in {line}");
        }
        assert_eq!(Point::parse_summary(&line), Some(p));
    }

    #[test]
    fn summary_parser_rejects_a_line_missing_a_key() {
        let line = point().summary_line().replace("p99_ms=", "p98_ms=");
        assert_eq!(Point::parse_summary(&line), None);
    }

    #[test]
    fn csv_has_a_header_and_one_row_per_point() {
        let mut q = point();
        q.shards = 1;
        let text = csv(&[point(), q]);
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].split(',').count(), COLUMNS.len());
        assert!(rows[0].starts_with("shards,subscribers,"));
        assert!(rows[1].starts_with("2,1000,3.500,5.00,151234,"));
        assert!(rows[2].starts_with("1,1000,"));
        assert!(rows.iter().all(|r| r.split(',').count() == COLUMNS.len()));
    }
}
