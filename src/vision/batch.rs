//! From image bytes to what a network reads: batches of `[B, 1, rows, cols]` tensors with
//! pixels scaled to [0, 1], their labels, and the confusion matrix of a set of predictions.

use super::ImageSet;
use crate::backend::Device;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

impl ImageSet {
    /// Images `indices` as one `[B, 1, rows, cols]` tensor on `device`, each pixel byte
    /// divided by 255 (the course's scaling), and their labels.
    pub fn batch(&self, indices: &[usize], device: Device) -> Result<(Tensor, Vec<u32>)> {
        let p = self.pixels();
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(Error::invalid(
                "ImageSet::batch",
                format!("image {bad} of a set of {}", self.len()),
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
        for &i in indices {
            x.extend(self.image(i).iter().map(|&b| b as f32 / 255.0));
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
