//! # minitorch
//!
//! MiniTorch (Cornell Tech's teaching library, modules 0 to 3) in Rust: operators, scalar
//! autodiff, tensors with strides and broadcasting, tensor autodiff, modules and SGD, and
//! one tensor-ops interface ([`backend::Backend`]) with three backends: the CPU (rayon),
//! NVIDIA GPUs (CUDA through cudarc, feature `cuda`) and any GPU through WebGPU (wgpu,
//! feature `wgpu`).
//!
//! ```
//! use minitorch::{Device, Tensor};
//! # fn main() -> minitorch::Result<()> {
//! let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2], Device::Cpu)?.requires_grad_(true);
//! let y = x.matmul(&x)?.sigmoid()?.sum_all()?;
//! y.backward()?;
//! assert_eq!(x.grad().unwrap().shape(), &[2, 2]);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod accuracy;
pub mod autodiff;
pub mod backend;
pub mod datasets;
pub mod distributed;
pub mod error;
pub mod executor;
pub mod layout;
pub mod nn;
pub mod operators;
pub mod optim;
pub mod scalar;
pub mod tensor;
pub mod train;

pub use backend::{Backend, BinaryOp, Device, ReduceOp, Storage, UnaryOp};
pub use error::{Error, Result};
pub use layout::Layout;
pub use scalar::Scalar;
pub use tensor::{no_grad, Activation, Tensor, Tensors};
