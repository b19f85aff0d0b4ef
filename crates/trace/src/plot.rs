//! An SVG plot of a replay over time: slab memory above; free memory and the largest free
//! block below (plotters, SVG backend only).

use plotters::prelude::*;

use crate::report::Report;
use crate::stats::Sample;

const MIB: f64 = (1u64 << 20) as f64;

/// The report's memory time series as an SVG document.
pub fn svg(report: &Report, title: &str) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (1000, 700)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let root = root
            .titled(title, ("sans-serif", 20))
            .map_err(|e| e.to_string())?;
        let (top, bottom) = root.split_vertically(330);
        let samples = &report.samples;
        let last_event = samples.last().map_or(1, |s| s.event.max(1));
        chart(
            &top,
            "slab memory (MiB)",
            last_event,
            &[("slab memory", &RED, &|s: &Sample| s.slab_bytes as f64 / MIB)],
            samples,
        )?;
        chart(
            &bottom,
            "free memory (MiB)",
            last_event,
            &[
                ("free memory", &BLUE, &|s: &Sample| {
                    s.free_bytes as f64 / MIB
                }),
                ("largest free block", &GREEN, &|s: &Sample| {
                    s.largest_free_bytes as f64 / MIB
                }),
            ],
            samples,
        )?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// One series to draw: its legend, colour and value.
type Series<'a> = (&'a str, &'a RGBColor, &'a dyn Fn(&Sample) -> f64);

fn chart(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    y_label: &str,
    last_event: u64,
    series: &[Series<'_>],
    samples: &[Sample],
) -> Result<(), String> {
    let y_max = samples
        .iter()
        .flat_map(|s| series.iter().map(move |(_, _, f)| f(s)))
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.1;
    let mut c = ChartBuilder::on(area)
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0u64..last_event, 0.0..y_max)
        .map_err(|e| e.to_string())?;
    c.configure_mesh()
        .x_desc("events replayed")
        .y_desc(y_label)
        .draw()
        .map_err(|e| e.to_string())?;
    for (name, colour, value) in series {
        let colour = **colour;
        c.draw_series(LineSeries::new(
            samples.iter().map(|s| (s.event, value(s))),
            colour.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?
        .label(*name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}
