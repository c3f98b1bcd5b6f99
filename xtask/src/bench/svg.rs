//! `<target>/bench-<board>.svg`: the bench's pictures, drawn with plotters.
//! Top panel: the ticker's IRQ latencies (last second of each ticker
//! figure) as a histogram in power-of-two bins, counts on a log scale (one
//! late interrupt must show beside 999 on time). Bottom panel: each VM's
//! share of a CPU as the hypervisor reported it when the VM exited.

use anyhow::{anyhow, Result};
use plotters::coord::combinators::IntoLogRange;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One ticker figure: its name and `(ticks, count)` per distinct latency.
pub struct Latencies {
    pub name: String,
    pub counts: Vec<(u64, u64)>,
}

/// One VM's exit report: what ran, and its percent of one CPU.
pub struct Share {
    pub name: String,
    pub percent: f64,
}

pub struct Picture {
    pub title: String,
    pub latencies: Vec<Latencies>,
    pub shares: Vec<Share>,
}

const WIDTH: u32 = 1000;
const LATENCY_HEIGHT: u32 = 520;
const SHARE_ROW: u32 = 26;
/// Colours told apart by most readers (Okabe and Ito's palette).
const COLOURS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(0, 0, 0),
    // Grey for the palette's yellow, too faint on white.
    RGBColor(140, 140, 140),
];

/// The power-of-two bin of `ticks`: bin k holds 2^k ..= 2^(k+1) - 1
/// (0 and 1 both in bin 0).
fn bin(ticks: u64) -> u32 {
    ticks.max(1).ilog2()
}

/// `131072` as `128k`: bin edges stay short under the axis.
fn ticks_label(ticks: u64) -> String {
    if ticks >= 1 << 20 && ticks.is_multiple_of(1 << 20) {
        format!("{}M", ticks >> 20)
    } else if ticks >= 1 << 10 && ticks.is_multiple_of(1 << 10) {
        format!("{}k", ticks >> 10)
    } else {
        ticks.to_string()
    }
}

/// The picture as SVG text.
pub fn render(picture: &Picture) -> Result<String> {
    let share_height = 90 + SHARE_ROW * picture.shares.len().max(1) as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, LATENCY_HEIGHT + share_height))
            .into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let root = root
            .titled(&picture.title, ("sans-serif", 22))
            .map_err(draw_error)?;
        let (top, bottom) = root.split_vertically(LATENCY_HEIGHT - 30);
        latency_panel(&top, &picture.latencies)?;
        share_panel(&bottom, &picture.shares)?;
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

fn draw_error<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow!("drawing the bench picture: {e}")
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// Grouped bars: per bin, one bar per figure, in the figures' order.
fn latency_panel(area: &Area, series: &[Latencies]) -> Result<()> {
    let all = || series.iter().flat_map(|s| s.counts.iter());
    let low = all().map(|&(t, _)| bin(t)).min().unwrap_or(0);
    let high = all().map(|&(t, _)| bin(t)).max().unwrap_or(0);
    let most = all().map(|&(_, n)| n).max().unwrap_or(1);
    let bins = (high - low + 1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "vtimer IRQ latency, deadline to handler: last second of each figure (1000 IRQs)",
            ("sans-serif", 17),
        )
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..bins, (0.5f64..most as f64 * 2.0).log_scale())
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bins as usize + 1)
        .x_label_formatter(&|x| ticks_label(1 << (low + x.round() as u32)))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .x_desc("ticks of the 62.5 MHz counter (power-of-two bins, log scale)")
        .y_desc("IRQs (log scale)")
        .draw()
        .map_err(draw_error)?;
    let width = 0.8 / series.len().max(1) as f64;
    for (i, figure) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut per_bin = std::collections::BTreeMap::<u32, u64>::new();
        for &(ticks, count) in &figure.counts {
            *per_bin.entry(bin(ticks)).or_default() += count;
        }
        let bars = per_bin.into_iter().map(move |(b, count)| {
            let left = f64::from(b - low) + 0.1 + width * i as f64;
            Rectangle::new([(left, 0.5), (left + width, count as f64)], colour.filled())
        });
        chart
            .draw_series(bars)
            .map_err(draw_error)?
            .label(figure.name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(draw_error)?;
    Ok(())
}

/// Horizontal bars, 0-100 % of one CPU, the figure beside each bar, the
/// first share at the top.
fn share_panel(area: &Area, shares: &[Share]) -> Result<()> {
    let rows = shares.len().max(1) as u32;
    // Segmented 0..n has n + 1 rows, n..n + 1 the last.
    let row = |i: usize| rows - 1 - i as u32;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "each VM's share of one CPU, from the hypervisor's report as it exited",
            ("sans-serif", 17),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(330)
        .build_cartesian_2d(0f64..100.0, (0u32..rows - 1).into_segmented())
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(rows as usize)
        .y_label_formatter(&|y| match y {
            SegmentValue::CenterOf(r) => shares
                .get((rows - 1 - r) as usize)
                .map(|s| s.name.clone())
                .unwrap_or_default(),
            _ => String::new(),
        })
        .x_label_formatter(&|x| format!("{x:.0}%"))
        .x_desc("% of one CPU over the VM's life")
        .light_line_style(WHITE)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()
        .map_err(draw_error)?;
    chart
        .draw_series(shares.iter().enumerate().map(|(i, share)| {
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(row(i))),
                    (
                        share.percent.clamp(0.0, 100.0),
                        SegmentValue::Exact(row(i) + 1),
                    ),
                ],
                COLOURS[0].filled(),
            );
            // A gap between rows.
            bar.set_margin(3, 3, 0, 0);
            bar
        }))
        .map_err(draw_error)?;
    chart
        .draw_series(shares.iter().enumerate().map(|(i, share)| {
            // Beside the bar, or inside a long one.
            let (x, colour, anchor) = if share.percent > 85.0 {
                (share.percent - 1.0, &WHITE, HPos::Right)
            } else {
                (share.percent.max(0.0) + 1.0, &BLACK, HPos::Left)
            };
            Text::new(
                format!("{:.1}%", share.percent),
                (x, SegmentValue::CenterOf(row(i))),
                TextStyle::from(("sans-serif", 13).into_font())
                    .color(colour)
                    .pos(Pos::new(anchor, VPos::Center)),
            )
        }))
        .map_err(draw_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture() -> Picture {
        Picture {
            title: "Tessera bench on test-board".into(),
            latencies: vec![
                Latencies {
                    name: "ticker alone".into(),
                    counts: vec![(168, 1000)],
                },
                Latencies {
                    name: "beside Linux".into(),
                    counts: vec![(122, 990), (130, 5), (9033, 5)],
                },
            ],
            shares: vec![
                Share {
                    name: "ticker alone: ticker".into(),
                    percent: 0.9,
                },
                Share {
                    name: "yield ping-pong: yield-a".into(),
                    percent: 22.5,
                },
                Share {
                    name: "own CPU, reset loop: ticker".into(),
                    percent: 93.7,
                },
            ],
        }
    }

    #[test]
    fn bins_are_powers_of_two() {
        assert_eq!((bin(0), bin(1), bin(2), bin(3), bin(4)), (0, 0, 1, 1, 2));
        assert_eq!((bin(127), bin(128), bin(255)), (6, 7, 7));
        assert_eq!(ticks_label(128), "128");
        assert_eq!(ticks_label(131072), "128k");
        assert_eq!(ticks_label(1 << 21), "2M");
        assert_eq!(ticks_label(1000), "1000");
    }

    #[test]
    fn renders_well_formed_svg_with_the_bars_and_labels() {
        let svg = render(&picture()).unwrap();
        let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let texts: Vec<String> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text().map(str::trim).map(String::from))
            .collect();
        for want in [
            "Tessera bench on test-board",
            "ticker alone",
            "beside Linux",
            "ticker alone: ticker",
            "yield ping-pong: yield-a",
            "own CPU, reset loop: ticker",
            "22.5%",
            "93.7%",
            "128",
            "8k",
        ] {
            assert!(texts.iter().any(|t| t == want), "no text {want:?}");
        }
        // Filled bars in the palette's first two colours: alone has one bin
        // (and a legend swatch), Linux three bins (64, 128, 8k) and a
        // swatch; the share bars are the first colour too.
        let filled = |colour: &str| {
            doc.descendants()
                .filter(|n| n.has_tag_name("rect"))
                .filter(|n| n.attribute("fill") == Some(colour))
                .count()
        };
        assert_eq!(filled("#0072B2"), 1 + 1 + 3);
        assert_eq!(filled("#E69F00"), 3 + 1);
    }

    #[test]
    fn empty_data_still_renders() {
        let svg = render(&Picture {
            title: "nothing".into(),
            latencies: vec![],
            shares: vec![],
        })
        .unwrap();
        roxmltree::Document::parse(&svg).expect("well-formed SVG");
    }
}
