//! From image bytes to what a network reads: batches of `[B, 1, rows, cols]` tensors with
//! pixels scaled to [0, 1], optionally each image shifted by a random whole-pixel offset
//! (data augmentation, on the host while the batch is assembled), their labels, and the
//! confusion matrix of a set of predictions.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::ImageSet;
use crate::backend::Device;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// A whole-pixel offset of an image: `dy` rows down and `dx` columns right (negative: up,
/// left).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shift {
    /// Rows down.
    pub dy: i32,
    /// Columns right.
    pub dx: i32,
}

/// Random shifts for data augmentation: each offset uniform in `[-max, max]` in both
/// directions, drawn from their own generator (seeded by `seed`, so a run repeats and the
/// shuffles and weights are the same with or without augmentation).
#[derive(Clone, Debug)]
pub struct Shifts {
    max: i32,
    rng: ChaCha8Rng,
}

impl Shifts {
    /// Offsets up to `max` pixels (0: none) from generator `seed`.
    pub fn new(max: usize, seed: u64) -> Result<Shifts> {
        let max = i32::try_from(max)
            .ok()
            .filter(|&m| m <= 64)
            .ok_or_else(|| {
                Error::invalid("augment", format!("a shift of {max} pixels; at most 64"))
            })?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // A stream of its own: the shuffles use stream 0 of the same seed.
        rng.set_stream(1);
        Ok(Shifts { max, rng })
    }

    /// The largest offset.
    pub fn max(&self) -> usize {
        self.max as usize
    }

    /// The next `n` offsets (all zero, drawing nothing, when `max` is 0).
    pub fn draw(&mut self, n: usize) -> Vec<Shift> {
        if self.max == 0 {
            return vec![Shift::default(); n];
        }
        let m = self.max;
        (0..n)
            .map(|_| Shift {
                dy: self.rng.random_range(-m..=m),
                dx: self.rng.random_range(-m..=m),
            })
            .collect()
    }
}

/// Appends the `rows x cols` image `src` moved by `s`, each byte divided by 255, to `out`:
/// pixel `(r, c)` is the source's `(r - dy, c - dx)`, 0 where that falls outside.
fn push_shifted(out: &mut Vec<f32>, src: &[u8], rows: usize, cols: usize, s: Shift) {
    for r in 0..rows as i64 {
        let sr = r - s.dy as i64;
        if sr < 0 || sr >= rows as i64 {
            out.extend(std::iter::repeat_n(0.0, cols));
            continue;
        }
        let line = &src[sr as usize * cols..(sr as usize + 1) * cols];
        for c in 0..cols as i64 {
            let sc = c - s.dx as i64;
            out.push(if sc < 0 || sc >= cols as i64 {
                0.0
            } else {
                line[sc as usize] as f32 / 255.0
            });
        }
    }
}

impl ImageSet {
    /// Images `indices` as one `[B, 1, rows, cols]` tensor on `device`, each pixel byte
    /// divided by 255 (the course's scaling), and their labels.
    pub fn batch(&self, indices: &[usize], device: Device) -> Result<(Tensor, Vec<u32>)> {
        self.batch_shifted(indices, &[], device)
    }

    /// [`ImageSet::batch`] with image `indices[k]` moved by `shifts[k]` (zero fill); no
    /// shifts (an empty slice) is [`ImageSet::batch`].
    pub fn batch_shifted(
        &self,
        indices: &[usize],
        shifts: &[Shift],
        device: Device,
    ) -> Result<(Tensor, Vec<u32>)> {
        let p = self.pixels();
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(Error::invalid(
                "ImageSet::batch",
                format!("image {bad} of a set of {}", self.len()),
            ));
        }
        if !shifts.is_empty() && shifts.len() != indices.len() {
            return Err(Error::invalid(
                "ImageSet::batch",
                format!("{} shifts for {} images", shifts.len(), indices.len()),
            ));
        }
        let len = indices
            .len()
            .checked_mul(p)
            .ok_or_else(|| Error::invalid("ImageSet::batch", "batch size overflows"))?;
        let mut x = Vec::new();
        x.try_reserve_exact(len).map_err(|_| {
            Error::invalid(
                "ImageSet::batch",
                format!("{} images of {p} pixels cannot be allocated", indices.len()),
            )
        })?;
        if shifts.is_empty() {
            for &i in indices {
                x.extend(self.image(i).iter().map(|&b| b as f32 / 255.0));
            }
        } else {
            for (&i, &s) in indices.iter().zip(shifts) {
                push_shifted(&mut x, self.image(i), self.rows, self.cols, s);
            }
        }
        let labels = indices.iter().map(|&i| self.labels[i] as u32).collect();
        let t = Tensor::from_vec(x, &[indices.len(), 1, self.rows, self.cols], device)?;
        Ok((t, labels))
    }
}

/// `classes x classes` counts: row = true label, column = predicted class.
pub fn confusion(labels: &[u32], predicted: &[u32], classes: usize) -> Result<Vec<Vec<usize>>> {
    if labels.len() != predicted.len() {
        return Err(Error::invalid(
            "confusion",
            format!(
                "{} labels and {} predictions",
                labels.len(),
                predicted.len()
            ),
        ));
    }
    let mut m = vec![vec![0usize; classes]; classes];
    for (&l, &p) in labels.iter().zip(predicted) {
        let (l, p) = (l as usize, p as usize);
        if l >= classes || p >= classes {
            return Err(Error::invalid(
                "confusion",
                format!("label {l} or prediction {p} outside {classes} classes"),
            ));
        }
        m[l][p] += 1;
    }
    Ok(m)
}
