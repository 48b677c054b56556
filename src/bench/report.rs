//! Results of `bench fanout`: one [`Point`] per (shards, subscribers, mode), printed as
//! a `key=value` line, written as CSV rows, and plotted as a PNG.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::mode::Mode;

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
    pub mode: Mode,
    /// `server_cores` per 1,000 receivers: CPU seconds per second per 1,000.
    pub cpu_per_1k: f64,
    /// The server's UDP I/O (`serve --io`): uring, poll, xdp, or auto (serve's choice).
    pub io: String,
}

const COLUMNS: [&str; 19] = [
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
    "mode",
    "cpu_per_1k",
    "io",
];

impl Point {
    fn values(&self) -> [String; 19] {
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
            self.mode.name().to_owned(),
            format!("{:.3}", self.cpu_per_1k),
            self.io.clone(),
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
            mode: Mode::parse(get("mode")?)?,
            cpu_per_1k: f("cpu_per_1k")?,
            // Lines from before the I/O sweep have no `io=`: serve chose.
            io: get("io").unwrap_or("auto").to_owned(),
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

/// What a panel plots of a point.
type Measure = fn(&Point) -> f64;

/// Three panels side by side, subscribers (log scale) against: packets/s per core, with
/// the kernel ceilings (unicast to N destinations, multicast to one group) in black and
/// grey; p99 latency; server CPU per 1,000 receivers. One line per (mode, shards).
pub fn plot(points: &[Point], path: &Path) -> Result<bool> {
    use plotters::prelude::*;
    let text = register_font();
    let root = BitMapBackend::new(path, (1800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels_area = root.split_evenly((1, 3));
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
    let mut series: Vec<(Mode, u32, &str)> = points
        .iter()
        .map(|p| (p.mode, p.shards, p.io.as_str()))
        .collect();
    series.sort_unstable();
    series.dedup();
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, YELLOW];
    let y_max = |f: fn(&Point) -> f64| points.iter().map(f).fold(1e-3, f64::max) * 1.15;
    let pps_max = y_max(|p| p.pps_per_core.max(p.ceiling_pps_per_core));
    let panels: [(&str, f64, Measure); 3] = [
        ("packets/s per server core", pps_max, |p| p.pps_per_core),
        ("p99 latency (ms)", y_max(|p| p.p99_ms), |p| p.p99_ms),
        (
            "server CPU s/s per 1,000 receivers",
            y_max(|p| p.cpu_per_1k),
            |p| p.cpu_per_1k,
        ),
    ];
    for (i, (area, (y_label, y_max, value))) in panels_area.iter().zip(panels).enumerate() {
        let mut b = ChartBuilder::on(area);
        b.margin(15);
        if text {
            b.caption(y_label, ("sans-serif", 20))
                .x_label_area_size(35)
                .y_label_area_size(70);
        }
        let mut chart = b.build_cartesian_2d(x_range.clone().log_scale(), 0.0..y_max)?;
        let y_format = |y: &f64| {
            if y_max < 10.0 {
                format!("{y:.2}")
            } else {
                format!("{y:.0}")
            }
        };
        let mut mesh = chart.configure_mesh();
        mesh.x_desc("subscribers")
            .x_labels(6)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&y_format);
        if !text {
            mesh.disable_x_mesh().disable_y_mesh();
        }
        mesh.draw()?;
        for (k, &(mode, shards, io)) in series.iter().enumerate() {
            let color = colors[k % colors.len()];
            let mut line: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.mode == mode && p.shards == shards && p.io == io)
                .map(|p| (p.subscribers as f64, value(p)))
                .collect();
            line.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart
                .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
                .label(format!(
                    "{}, {shards} shard{}{}",
                    mode.name(),
                    if shards == 1 { "" } else { "s" },
                    if io == "auto" {
                        String::new()
                    } else {
                        format!(", {io}")
                    }
                ))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
            chart.draw_series(line.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        }
        if i == 0 {
            for (multicast, color, label) in [
                (false, BLACK, "kernel ceiling, unicast, 1 core"),
                (
                    true,
                    RGBColor(150, 150, 150),
                    "kernel ceiling, multicast, 1 core",
                ),
            ] {
                let mut ceiling: Vec<(f64, f64)> = points
                    .iter()
                    .filter(|p| p.mode.is_multicast() == multicast)
                    .map(|p| (p.subscribers as f64, p.ceiling_pps_per_core))
                    .collect();
                if ceiling.is_empty() {
                    continue;
                }
                ceiling.sort_by(|a, b| a.0.total_cmp(&b.0));
                ceiling.dedup_by(|a, b| {
                    a.0 == b.0 && {
                        b.1 = b.1.max(a.1);
                        true
                    }
                });
                chart
                    .draw_series(LineSeries::new(ceiling, color.stroke_width(1)))?
                    .label(label)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
            }
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
            mode: Mode::IpMulticast,
            cpu_per_1k: 1.97,
            io: "xdp".into(),
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
            "mode=ipmulticast",
            "cpu_per_1k=1.970",
        ] {
            assert!(line.contains(key), "{key} missing in {line}");
        }
        assert_eq!(Point::parse_summary(&line), Some(p));
    }

    #[test]
    fn summary_parser_rejects_a_line_missing_a_key() {
        for (key, other) in [
            ("p99_ms=", "p98_ms="),
            ("mode=", "form="),
            ("cpu_per_1k=", "cpu="),
        ] {
            let line = point().summary_line().replace(key, other);
            assert_eq!(Point::parse_summary(&line), None, "{line}");
        }
        let unknown_mode = point().summary_line().replace("=ipmulticast", "=ip");
        assert_eq!(Point::parse_summary(&unknown_mode), None);
    }

    #[test]
    fn a_unicast_line_keeps_its_keys_in_front_and_adds_mode_and_cpu_at_the_end() {
        let p = Point {
            mode: Mode::Unicast,
            ..point()
        };
        let line = p.summary_line();
        let keys: Vec<&str> = line
            .split(' ')
            .map(|kv| kv.split_once('=').unwrap().0)
            .collect();
        assert_eq!(keys[..16], COLUMNS[..16]);
        assert_eq!(keys[16..], ["mode", "cpu_per_1k", "io"]);
        assert!(
            line.ends_with(" mode=unicast cpu_per_1k=1.970 io=xdp"),
            "{line}"
        );
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
        assert!(rows[0].ends_with(",mode,cpu_per_1k,io"));
        assert!(rows[1].ends_with(",ipmulticast,1.970,xdp"));
        assert!(rows[1].starts_with("2,1000,3.500,5.00,151234,"));
        assert!(rows[2].starts_with("1,1000,"));
        assert!(rows.iter().all(|r| r.split(',').count() == COLUMNS.len()));
    }
}
