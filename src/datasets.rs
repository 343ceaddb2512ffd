//! The course's six two-dimensional datasets (MiniTorch's `datasets.py`), generated from
//! a seed: points in the unit square with 0/1 labels.

use std::fmt;

use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::memory;

/// Which of the six datasets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DatasetKind {
    /// Label 1 when x1 < 0.5.
    Simple,
    /// Label 1 when x1 + x2 < 0.5.
    Diag,
    /// Label 1 when x1 < 0.2 or x1 > 0.8.
    Split,
    /// Label 1 when exactly one of x1, x2 is above 0.5.
    Xor,
    /// Label 1 outside the circle of squared radius 0.1 around the centre.
    Circle,
    /// Two interleaved spirals.
    Spiral,
}

impl DatasetKind {
    /// All six, in the order of the course's results table.
    pub const ALL: [DatasetKind; 6] = [
        DatasetKind::Simple,
        DatasetKind::Split,
        DatasetKind::Xor,
        DatasetKind::Diag,
        DatasetKind::Circle,
        DatasetKind::Spiral,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Simple => "simple",
            DatasetKind::Diag => "diag",
            DatasetKind::Split => "split",
            DatasetKind::Xor => "xor",
            DatasetKind::Circle => "circle",
            DatasetKind::Spiral => "spiral",
        }
    }

    /// Parse a name (case-insensitive).
    pub fn parse(s: &str) -> Result<DatasetKind> {
        DatasetKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::invalid(
                    "dataset",
                    format!("unknown dataset {s:?}; expected one of simple, diag, split, xor, circle, spiral"),
                )
            })
    }

    /// The label of a point under this dataset's rule (Spiral has no rule: None).
    pub fn label(self, x1: f64, x2: f64) -> Option<f32> {
        let b = match self {
            DatasetKind::Simple => x1 < 0.5,
            DatasetKind::Diag => x1 + x2 < 0.5,
            DatasetKind::Split => !(0.2..=0.8).contains(&x1),
            DatasetKind::Xor => (x1 < 0.5 && x2 > 0.5) || (x1 > 0.5 && x2 < 0.5),
            DatasetKind::Circle => (x1 - 0.5).powi(2) + (x2 - 0.5).powi(2) > 0.1,
            DatasetKind::Spiral => return None,
        };
        Some(if b { 1.0 } else { 0.0 })
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A dataset: `n` points and their labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    /// Which dataset.
    pub kind: DatasetKind,
    /// The points, each in [0, 1)^2 (Spiral's reach slightly outside).
    pub x: Vec<[f64; 2]>,
    /// The labels, 0.0 or 1.0.
    pub y: Vec<f32>,
}

impl Graph {
    /// Generate `n` points of `kind` from `seed` (ChaCha8): the same seed gives the same
    /// points on every machine. Spiral needs an even `n` of at least 2.
    pub fn new(kind: DatasetKind, n: usize, seed: u64) -> Result<Graph> {
        if n == 0 {
            return Err(Error::invalid(
                "dataset",
                "the number of points must be at least 1",
            ));
        }
        Graph::check_size("dataset", n)?;
        if kind == DatasetKind::Spiral {
            return spiral(n);
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let (mut x, mut y) = Graph::alloc(n)?;
        x.extend((0..n).map(|_| [rng.random::<f64>(), rng.random::<f64>()]));
        y.extend(
            x.iter()
                .map(|p| kind.label(p[0], p[1]).expect("rule-based dataset")),
        );
        Ok(Graph { kind, x, y })
    }

    /// Bytes a dataset of `n` points holds (points in f64, labels in f32).
    pub const BYTES_PER_POINT: u128 = 16 + 4;

    /// Errors, naming `points`, when `n` points do not fit this machine's memory.
    pub fn check_size(op: &'static str, n: usize) -> Result<()> {
        memory::need(
            op,
            &format!("points {n}"),
            "the points and labels",
            n as u128 * Graph::BYTES_PER_POINT,
        )
    }

    /// Empty point and label vectors with room for `n` (a failed allocation is an error).
    fn alloc(n: usize) -> Result<(Vec<[f64; 2]>, Vec<f32>)> {
        let what = format!("points {n}");
        Ok((
            memory::try_vec("dataset", &what, "the points", n)?,
            memory::try_vec("dataset", &what, "the labels", n)?,
        ))
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.x.len()
    }

    /// True when there are no points.
    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }

    /// The points as a flat row-major `(n, 2)` f32 buffer.
    pub fn x_flat(&self) -> Vec<f32> {
        self.x
            .iter()
            .flat_map(|p| [p[0] as f32, p[1] as f32])
            .collect()
    }
}

/// The course's spiral: with x(t) = t cos t / 20 and y(t) = t sin t / 20, and i in
/// 5 .. 5 + n/2, the first half at (x(10i/(n/2)) + 0.5, y(10i/(n/2)) + 0.5) labelled 0 and
/// the second at (y(-10i/(n/2)) + 0.5, x(-10i/(n/2)) + 0.5) labelled 1. Deterministic.
fn spiral(n: usize) -> Result<Graph> {
    if n < 2 || !n.is_multiple_of(2) {
        return Err(Error::invalid(
            "dataset",
            format!("spiral needs an even number of points (at least 2), got {n}"),
        ));
    }
    let half = n / 2;
    let fx = |t: f64| t * t.cos() / 20.0;
    let fy = |t: f64| t * t.sin() / 20.0;
    let t = |i: usize| 10.0 * (i + 5) as f64 / half as f64;
    let (mut x, mut y) = Graph::alloc(n)?;
    x.extend((0..half).map(|i| [fx(t(i)) + 0.5, fy(t(i)) + 0.5]));
    x.extend((0..half).map(|i| [fy(-t(i)) + 0.5, fx(-t(i)) + 0.5]));
    y.resize(half, 0.0);
    y.resize(n, 1.0);
    Ok(Graph {
        kind: DatasetKind::Spiral,
        x,
        y,
    })
}
