//! The `mnist` example's figure: loss and accuracy per epoch, the confusion matrix, and a
//! grid of misclassified validation images, side by side in one SVG.

use std::path::Path;

use minitorch::vision::ImageSet;
use minitorch::Result;
use plotters::prelude::*;

use super::io_err;

/// Misclassified images shown at most.
const WRONG_SHOWN: usize = 24;

/// Draws the run's figure into `path` (SVG).
#[allow(clippy::too_many_arguments)]
pub fn plot_run(
    path: &Path,
    title: &str,
    losses: &[f32],
    train_acc: &[f64],
    val_acc: &[f64],
    confusion: &[Vec<usize>],
    val: &ImageSet,
    predicted: &[u32],
) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| io_err("plot", path, e);
    let root = SVGBackend::new(path, (1560, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, ("sans-serif", 20))
        .map_err(|e| err(&e))?;
    let panels = root.split_evenly((1, 3));

    // Loss (left axis) and accuracies (right axis, 0-100%) per epoch.
    let epochs = losses.len().max(2);
    let max_loss = losses
        .iter()
        .copied()
        .filter(|l| l.is_finite())
        .fold(1e-6f32, f32::max) as f64;
    let mut chart = ChartBuilder::on(&panels[0])
        .caption(
            "loss (red) and accuracy % (train green, val blue)",
            ("sans-serif", 14),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .right_y_label_area_size(40)
        .build_cartesian_2d(1..epochs, 0.0..max_loss * 1.05)
        .map_err(|e| err(&e))?
        .set_secondary_coord(1..epochs, 0.0..100.0);
    chart
        .configure_mesh()
        .x_desc("epoch")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .configure_secondary_axes()
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(
            losses.iter().enumerate().map(|(i, &l)| (i + 1, l as f64)),
            &RED,
        ))
        .map_err(|e| err(&e))?;
    for (acc, color) in [(train_acc, GREEN), (val_acc, BLUE)] {
        chart
            .draw_secondary_series(LineSeries::new(
                acc.iter().enumerate().map(|(i, &a)| (i + 1, a)),
                &color,
            ))
            .map_err(|e| err(&e))?;
    }

    // Confusion matrix: rows true class, columns predicted; shade by share of the row.
    let k = confusion.len();
    let mut cm = ChartBuilder::on(&panels[1])
        .caption(
            "confusion (row: true, column: predicted)",
            ("sans-serif", 14),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(30)
        .build_cartesian_2d(0..k, 0..k)
        .map_err(|e| err(&e))?;
    cm.configure_mesh()
        .disable_mesh()
        .x_labels(k)
        .y_labels(k)
        .draw()
        .map_err(|e| err(&e))?;
    for (t, row) in confusion.iter().enumerate() {
        let total = row.iter().sum::<usize>().max(1) as f64;
        for (p, &c) in row.iter().enumerate() {
            let share = c as f64 / total;
            let shade = (255.0 * (1.0 - share)) as u8;
            // Row t drawn from the top.
            let y = k - 1 - t;
            cm.draw_series(std::iter::once(Rectangle::new(
                [(p, y), (p + 1, y + 1)],
                RGBColor(shade, shade, 255).filled(),
            )))
            .map_err(|e| err(&e))?;
            if c > 0 {
                cm.draw_series(std::iter::once(Text::new(
                    c.to_string(),
                    (p, y + 1),
                    ("sans-serif", 11),
                )))
                .map_err(|e| err(&e))?;
            }
        }
    }

    // Misclassified validation images, each captioned "predicted (true)".
    let wrong: Vec<usize> = (0..val.len())
        .filter(|&i| predicted.get(i).is_some_and(|&p| p != val.labels[i] as u32))
        .take(WRONG_SHOWN)
        .collect();
    let area = &panels[2];
    area.draw(&Text::new(
        format!("misclassified: predicted (true), first {}", wrong.len()),
        (10, 10),
        ("sans-serif", 14),
    ))
    .map_err(|e| err(&e))?;
    let (cell, scale) = (82i32, 2i32);
    for (n, &i) in wrong.iter().enumerate() {
        let (x0, y0) = (
            10 + (n as i32 % 6) * cell,
            36 + (n as i32 / 6) * (cell + 10),
        );
        for (j, &px) in val.image(i).iter().enumerate() {
            let (r, c) = ((j / val.cols) as i32, (j % val.cols) as i32);
            let v = 255 - px;
            area.draw(&Rectangle::new(
                [
                    (x0 + c * scale, y0 + r * scale),
                    (x0 + (c + 1) * scale, y0 + (r + 1) * scale),
                ],
                RGBColor(v, v, v).filled(),
            ))
            .map_err(|e| err(&e))?;
        }
        area.draw(&Text::new(
            format!("{} ({})", predicted[i], val.labels[i]),
            (x0, y0 + val.rows as i32 * scale + 2),
            ("sans-serif", 12),
        ))
        .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
