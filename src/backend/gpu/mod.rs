//! What the two GPU backends (wgpu and CUDA) share: the launch plan chosen by shape
//! ([`plan`]), the code generators of the fused and elementwise kernels ([`codegen`]), the
//! one metadata writer of those kernels ([`meta`]), the cache of compiled generated
//! kernels ([`cache`]), and every kernel source, hand-written or generated, in one place
//! ([`sources`]). The backends keep only what differs: buffers, pipelines or modules, and
//! the launch call.

pub mod cache;
pub mod codegen;
pub mod generated;
pub mod meta;
pub mod plan;
pub mod sources;
