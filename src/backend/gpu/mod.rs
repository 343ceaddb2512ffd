//! What the two GPU backends (wgpu and CUDA) share: every kernel source, hand-written
//! or generated, in one place ([`sources`]). The backends keep only what differs:
//! buffers, pipelines or modules, and the launch call.

pub mod sources;
