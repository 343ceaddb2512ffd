//! # minitorch
//!
//! MiniTorch (Cornell Tech's teaching library, modules 0 to 4) in Rust: operators, scalar
//! autodiff, tensors with strides and broadcasting, tensor autodiff, modules, SGD and Adam,
//! convolution, pooling, softmax and dropout ([`nn`], [`vision`] for image sets), and one
//! tensor-ops interface ([`backend::Backend`]) with three backends: the CPU (rayon),
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
//!
//! ## Choosing a device
//!
//! A [`Device`] names a backend; one binary holds every backend compiled in (features
//! `wgpu` and `cuda`), and a device that cannot run here is an error saying why, never a
//! panic, so a program can fall back to the CPU:
//!
//! ```
//! use minitorch::{Device, Tensor};
//! # fn main() -> minitorch::Result<()> {
//! let wanted = Device::parse("wgpu")?;
//! let device = if wanted.backend().is_ok() { wanted } else { Device::Cpu };
//! let x = Tensor::ones(&[2, 2], device)?;
//! // Move a tensor to the CPU to read it anywhere.
//! assert_eq!(x.to_device(Device::Cpu)?.to_vec()?, vec![1.0; 4]);
//! assert!(Device::parse("tpu").is_err());
//! # Ok(())
//! # }
//! ```
//!
//! ## Training
//!
//! [`nn`] holds the course's layers and modules, [`optim`] the optimiser, [`datasets`]
//! the six 2-D datasets and [`train`] the course's training loop on any device
//! ([`train::Trainer`], [`train::run`]). Sizes that do not fit the machine are errors
//! naming the setting ([`memory`]).

#![warn(missing_docs)]

pub mod accuracy;
pub mod autodiff;
pub mod backend;
pub mod datasets;
pub mod distributed;
pub mod error;
pub mod executor;
pub mod kernel_catalog;
pub mod layout;
pub mod memory;
pub mod nn;
pub mod operators;
pub mod optim;
pub mod scalar;
pub mod tensor;
pub mod train;
pub mod vision;

pub use backend::{Backend, BinaryOp, Device, ReduceOp, Storage, UnaryOp};
pub use error::{Error, Result};
pub use layout::Layout;
pub use scalar::Scalar;
pub use tensor::{no_grad, Activation, Tensor, Tensors};
