//! The one error type of the crate. Every public operation returns [`Result`], and every
//! error names the operation and the shapes (or the device) involved.

use std::fmt;

/// Shorthand for `std::result::Result<T, minitorch::Error>`.
pub type Result<T> = std::result::Result<T, Error>;

/// Shapes printed as `(2, 3)`, the way MiniTorch prints them.
#[derive(Clone, PartialEq, Eq)]
pub struct Shapes(pub Vec<Vec<usize>>);

impl fmt::Debug for Shapes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Shapes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, " and ")?;
            }
            write!(f, "(")?;
            for (j, d) in s.iter().enumerate() {
                if j > 0 {
                    write!(f, ", ")?;
                }
                write!(f, "{d}")?;
            }
            if s.len() == 1 {
                write!(f, ",")?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong in minitorch.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Shapes that do not fit the operation (broadcast, matmul, view, reduce dim, ...).
    #[error("{op}: shapes {shapes}: {msg}")]
    Shape {
        /// The operation that was asked for.
        op: &'static str,
        /// The shapes involved, in argument order.
        shapes: Shapes,
        /// What is wrong with them.
        msg: String,
    },
    /// An index that does not address an element of the shape.
    #[error("{op}: index {index:?} invalid for shape {shape}: {msg}")]
    Index {
        /// The operation that was asked for.
        op: &'static str,
        /// The index given.
        index: Vec<isize>,
        /// The shape it was checked against.
        shape: Shapes,
        /// What is wrong with it.
        msg: String,
    },
    /// Misuse of automatic differentiation (backward on a non-scalar, ...).
    #[error("{op}: {msg}")]
    Autodiff {
        /// The operation that was asked for.
        op: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// A device whose support was not compiled into this binary.
    #[error("device {device}: this binary was built without the `{feature}` feature; rebuild with `--features {feature}` (for example `cargo run --example train --features {feature}`)")]
    FeatureNotCompiled {
        /// The device asked for.
        device: &'static str,
        /// The cargo feature that enables it.
        feature: &'static str,
    },
    /// A compiled-in device that cannot be used here (no GPU, no driver, ...).
    #[error("device {device} unavailable: {msg}")]
    DeviceUnavailable {
        /// The device asked for.
        device: &'static str,
        /// Why, and how to get it.
        msg: String,
    },
    /// A failure inside a backend (kernel compile, launch, transfer).
    #[error("{backend} backend: {op}: {msg}")]
    Backend {
        /// The backend that failed.
        backend: &'static str,
        /// The operation it was running.
        op: &'static str,
        /// The backend's own message.
        msg: String,
    },
    /// Two tensors on different devices given to one operation.
    #[error("{op}: tensors on different devices ({a} and {b}); move one with `to_device`")]
    DeviceMismatch {
        /// The operation that was asked for.
        op: &'static str,
        /// The first tensor's device.
        a: String,
        /// The second tensor's device.
        b: String,
    },
    /// Bad input that is not a shape (an empty dataset, a bad option value, ...).
    #[error("{op}: {msg}")]
    Invalid {
        /// The operation that was asked for.
        op: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// Reading or writing a file.
    #[error("{op}: {path}: {msg}")]
    Io {
        /// The operation that was asked for.
        op: &'static str,
        /// The file.
        path: String,
        /// What went wrong.
        msg: String,
    },
}

impl Error {
    /// A shape error for `op` on the given shapes.
    pub fn shape(op: &'static str, shapes: &[&[usize]], msg: impl Into<String>) -> Self {
        Error::Shape {
            op,
            shapes: Shapes(shapes.iter().map(|s| s.to_vec()).collect()),
            msg: msg.into(),
        }
    }

    /// An invalid-argument error for `op`.
    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Invalid {
            op,
            msg: msg.into(),
        }
    }

    /// A backend failure.
    pub fn backend(backend: &'static str, op: &'static str, msg: impl Into<String>) -> Self {
        Error::Backend {
            backend,
            op,
            msg: msg.into(),
        }
    }
}
