//! The matmul shape table of issue 13 and the `gemm` crate reference, shared by
//! `benches/ops.rs` (criterion) and `examples/matmul_vs_gemm.rs` (interleaved timing).

/// One product of the shape table: `[batch, n, k] @ [batch, k, m]`, A and / or B stored
/// transposed.
#[derive(Clone, Copy)]
pub struct Shape {
    /// Batch size.
    pub batch: usize,
    /// Rows of A and the output.
    pub n: usize,
    /// Inner size.
    pub k: usize,
    /// Columns of B and the output.
    pub m: usize,
    /// A stored transposed.
    pub ta: bool,
    /// B stored transposed.
    pub tb: bool,
}

impl Shape {
    /// Name in the tables: `[batch x]n x k[T] @ k x m[T]`.
    pub fn id(&self) -> String {
        let t = |x: bool| if x { "T" } else { "" };
        let batch = if self.batch > 1 {
            format!("{}x", self.batch)
        } else {
            String::new()
        };
        format!(
            "{batch}{}x{}{}@{}x{}{}",
            self.n,
            self.k,
            t(self.ta),
            self.k,
            self.m,
            t(self.tb)
        )
    }

    /// Layout of A: `[batch, n, k]`, over storage `[batch, k, n]` when transposed.
    pub fn a_layout(&self) -> minitorch::Layout {
        let (b, n, k) = (self.batch, self.n, self.k);
        let strides = if self.ta {
            [n * k, 1, n]
        } else {
            [n * k, k, 1]
        };
        minitorch::Layout::new(vec![b, n, k], strides.to_vec(), 0).unwrap()
    }

    /// Layout of B: `[batch, k, m]`, over storage `[batch, m, k]` when transposed.
    pub fn b_layout(&self) -> minitorch::Layout {
        let (b, k, m) = (self.batch, self.k, self.m);
        let strides = if self.tb {
            [k * m, 1, k]
        } else {
            [k * m, m, 1]
        };
        minitorch::Layout::new(vec![b, k, m], strides.to_vec(), 0).unwrap()
    }
}

/// Rows 1, 10, 50, 500 x inner 10, 100, 1000 x columns 100, 1000; squares 256-2048;
/// transposed operands; batches.
pub fn shape_table() -> Vec<Shape> {
    let s = |batch, n, k, m, ta, tb| Shape {
        batch,
        n,
        k,
        m,
        ta,
        tb,
    };
    let mut v = Vec::new();
    for n in [1, 10, 50, 500] {
        for k in [10, 100, 1000] {
            for m in [100, 1000] {
                v.push(s(1, n, k, m, false, false));
            }
        }
    }
    for n in [256, 512, 1024, 2048] {
        v.push(s(1, n, n, n, false, false));
    }
    // Transposed operands, as the backward pass produces them.
    v.push(s(1, 1000, 50, 1000, true, false));
    v.push(s(1, 50, 1000, 1000, false, true));
    v.push(s(1, 10, 1000, 1000, false, true));
    v.push(s(1, 500, 1000, 1000, true, true));
    // Batches.
    v.push(s(8, 64, 64, 64, false, false));
    v.push(s(4, 256, 256, 256, false, false));
    v.push(s(16, 10, 100, 100, false, false));
    v
}

/// The `gemm` crate on two threads, for one shape of the table.
pub fn gemm_shape(sh: &Shape, a: &[f32], b: &[f32], out: &mut [f32]) {
    let (n, k, m) = (sh.n, sh.k, sh.m);
    let (a_cs, a_rs) = if sh.ta { (n, 1) } else { (1, k) };
    let (b_cs, b_rs) = if sh.tb { (k, 1) } else { (1, m) };
    for z in 0..sh.batch {
        let (a, b, o) = (&a[z * n * k..], &b[z * k * m..], &mut out[z * n * m..]);
        // SAFETY: each batch of a, b and out holds its n*k, k*m, n*m values at these strides.
        unsafe {
            gemm::gemm(
                n,
                m,
                k,
                o.as_mut_ptr(),
                1,
                m as isize,
                false,
                a.as_ptr(),
                a_cs as isize,
                a_rs as isize,
                b.as_ptr(),
                b_cs as isize,
                b_rs as isize,
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(2),
            );
        }
    }
}
