//! The SVG: carts intact against recycling rate, one series per design.

use super::report::Row;
use crate::client::Design;
use std::path::Path;

/// Lowest recycling rate the log-scale plot shows; "no recycling" sits here.
pub(super) const PLOT_FLOOR: f64 = 0.1;

/// Carts intact against recycling rate, one series per design. The rate spans
/// three orders of magnitude (a crash now and then up to one instance per
/// request), so the x axis is logarithmic.
pub(super) fn plot(rows: &[Row], path: &Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let max_rate = rows
        .iter()
        .map(|row| row.recycles_per_100_requests)
        .fold(100.0_f64, f64::max)
        * 1.6;
    let root = SVGBackend::new(path, (1040, 600)).into_drawing_area();
    let draw = |result: Result<(), DrawingAreaErrorKind<std::io::Error>>| {
        result.map_err(|error| anyhow::anyhow!("plot: {error}"))
    };
    draw(root.fill(&WHITE))?;
    // Points carry scenario numbers; the key beside the chart names them.
    let (plot_area, key_area) = root.split_horizontally(770);
    let mut scenarios: Vec<&str> = Vec::new();
    for row in rows {
        if !scenarios.contains(&row.scenario.as_str()) {
            scenarios.push(&row.scenario);
        }
    }
    let number_of = |name: &str| {
        scenarios
            .iter()
            .position(|s| *s == name)
            .map_or(0, |i| i + 1)
    };
    draw(key_area.draw(&Text::new(
        "scenarios",
        (8, 60),
        ("sans-serif", 15).into_font(),
    )))?;
    for (index, name) in scenarios.iter().enumerate() {
        draw(key_area.draw(&Text::new(
            format!("{:>2}  {name}", index + 1),
            (8, 84 + 20 * index as i32),
            ("sans-serif", 13).into_font(),
        )))?;
    }
    let mut chart = ChartBuilder::on(&plot_area)
        .caption("Carts intact vs instance recycling", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(56)
        .build_cartesian_2d((PLOT_FLOOR..max_rate).log_scale(), -2.0..105.0)
        .map_err(|error| anyhow::anyhow!("plot: {error}"))?;
    draw(
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc(format!(
                "instance recycles per 100 requests (log scale; none is drawn at {PLOT_FLOOR})"
            ))
            .y_desc("carts intact (%)")
            .draw(),
    )?;
    let series = [
        (Design::Stateful, "stateful-cart (memory)", RED),
        (Design::Stateless, "stateless-cart (session store)", BLUE),
    ];
    for (design, label, colour) in series {
        // Scenarios that land on the same spot share one label.
        let mut spots: Vec<((f64, f64), Vec<usize>)> = Vec::new();
        for row in rows.iter().filter(|row| row.design == design) {
            let at = (
                row.recycles_per_100_requests.max(PLOT_FLOOR),
                row.carts_intact_pct,
            );
            let number = number_of(&row.scenario);
            match spots
                .iter_mut()
                .find(|(spot, _)| (spot.0 / at.0 - 1.0).abs() < 0.05 && (spot.1 - at.1).abs() < 2.0)
            {
                Some((_, numbers)) => numbers.push(number),
                None => spots.push((at, vec![number])),
            }
        }
        draw(
            chart
                .draw_series(
                    spots
                        .iter()
                        .map(|&(at, _)| Circle::new(at, 5, colour.filled())),
                )
                .map(|series| {
                    series
                        .label(label)
                        .legend(move |(x, y)| Circle::new((x + 10, y), 5, colour.filled()));
                }),
        )?;
        if design == Design::Stateful {
            // Number the stateful points: they are the ones that move.
            draw(
                chart
                    .draw_series(spots.iter().map(|(at, numbers)| {
                        let label = numbers
                            .iter()
                            .map(usize::to_string)
                            .collect::<Vec<_>>()
                            .join(",");
                        EmptyElement::at(*at)
                            + Text::new(label, (-4, -22), ("sans-serif", 13).into_font())
                    }))
                    .map(|_| ()),
            )?;
        }
    }
    draw(
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::MiddleRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw(),
    )?;
    draw(root.present())?;
    Ok(())
}
