//! Scalar autodiff (module 1); filled in below.
pub struct Scalar;
