//! The MXCSR guard: DAZ and FTZ set for the duration of a matmul's micro-kernel work on
//! whichever thread runs it, the previous value restored after (x86-64; a no-op
//! elsewhere).

/// Sets DAZ and FTZ in MXCSR for its lifetime on the current thread, then restores the
/// previous value (see the module docs). A no-op off x86-64.
pub(crate) struct FlushSubnormals {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

#[cfg(target_arch = "x86_64")]
pub(super) const MXCSR_DAZ_FTZ: u32 = (1 << 6) | (1 << 15);

/// The current thread's MXCSR.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn mxcsr() -> u32 {
    let mut v: u32 = 0;
    // SAFETY: stmxcsr writes 4 bytes to the given address, a local.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut v as *mut u32, options(nostack, preserves_flags));
    }
    v
}

#[cfg(target_arch = "x86_64")]
#[inline]
pub(super) fn set_mxcsr(v: u32) {
    // SAFETY: ldmxcsr reads 4 bytes from a local; the value is a valid MXCSR (a saved one,
    // or one with only the DAZ / FTZ bits added).
    unsafe {
        std::arch::asm!("ldmxcsr [{}]", in(reg) &v as *const u32, options(nostack, preserves_flags, readonly));
    }
}

impl FlushSubnormals {
    #[inline]
    pub(crate) fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let saved = mxcsr();
            set_mxcsr(saved | MXCSR_DAZ_FTZ);
            FlushSubnormals { saved }
        }
        #[cfg(not(target_arch = "x86_64"))]
        FlushSubnormals {}
    }
}

impl Drop for FlushSubnormals {
    #[inline]
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        set_mxcsr(self.saved);
    }
}
