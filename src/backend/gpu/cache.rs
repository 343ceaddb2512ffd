//! The cache of generated kernels, shared by wgpu and CUDA: one compiled kernel (a
//! pipeline, a loaded module) per distinct program and variant, built on first use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::backend::fused::{Program, Variant};
use crate::error::Result;

/// Compiled kernels of type `K` by variant and program; a hit clones nothing but the
/// `Arc`. Two threads that miss together may both build; the first insert wins.
pub struct KernelCache<K> {
    map: Mutex<HashMap<Variant, HashMap<Program, Arc<K>>>>,
}

impl<K> Default for KernelCache<K> {
    fn default() -> Self {
        KernelCache {
            map: Mutex::new(HashMap::new()),
        }
    }
}

// `Program` hashes and compares by its expression; its interior mutex only memoises
// gradient programs, so it is a sound key.
#[allow(clippy::mutable_key_type)]
impl<K> KernelCache<K> {
    /// The kernel of `p` and `variant`, built by `build` on first use. The lock is not held
    /// while building (a compile may take long).
    pub fn get_or_build(
        &self,
        p: &Program,
        variant: Variant,
        build: impl FnOnce() -> Result<K>,
    ) -> Result<Arc<K>> {
        let lock = || self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = lock().get(&variant).and_then(|m| m.get(p)) {
            return Ok(k.clone());
        }
        let k = Arc::new(build()?);
        let mut map = lock();
        let entry = map.entry(variant).or_default();
        Ok(entry.entry(p.clone()).or_insert(k).clone())
    }

    /// Number of kernels built so far.
    pub fn len(&self) -> usize {
        self.map
            .lock()
            .map(|c| c.values().map(HashMap::len).sum())
            .unwrap_or(0)
    }

    /// True when nothing was built yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_once_per_program_and_variant() {
        let cache = KernelCache::<usize>::default();
        let p = Program::identity();
        let mut builds = 0;
        for _ in 0..3 {
            let k = cache
                .get_or_build(&p, Variant::Strided, || {
                    builds += 1;
                    Ok(7)
                })
                .unwrap();
            assert_eq!(*k, 7);
        }
        cache
            .get_or_build(&p, Variant::Contiguous, || Ok(8))
            .unwrap();
        assert_eq!((builds, cache.len()), (1, 2));
        let err = cache.get_or_build(
            Program::of_unary(crate::UnaryOp::Neg),
            Variant::Strided,
            || Err(crate::Error::invalid("t", "no")),
        );
        assert!(err.is_err() && cache.len() == 2);
    }
}
