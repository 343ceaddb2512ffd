//! A matrix read through a strided view of any rank: the layout's first `row_dims`
//! dimensions index the matrix's rows and the rest its columns, each group in row-major
//! order. A convolution's window view `[Cin, KH, KW | B, OH, OW]` over its padded input is
//! such a matrix: its im2col columns, which [`Backend::matmul_view`] can read without
//! writing them out (MiniTorch's strides idea, taken one step further).
//!
//! Element `(r, c)` lies at `offset + row_offset(r) + col_offset(c)`: the position splits
//! into a part from the row index and a part from the column index, which is what lets a
//! backend pack matmul panels from the view directly.
//!
//! [`Backend::matmul_view`]: super::Backend::matmul_view

use smallvec::smallvec;

use crate::error::{Error, Result};
use crate::layout::{shape_size, Layout};

/// A matrix seen through `layout`, its first `row_dims` dimensions indexing rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatrixView {
    layout: Layout,
    row_dims: usize,
}

/// One group of dimensions merged into a single stride, where its positions are evenly
/// spaced (size-1 dimensions are ignored).
fn merged(shape: &[usize], strides: &[usize]) -> Option<usize> {
    let mut dims = shape.iter().zip(strides).rev().filter(|(&d, _)| d != 1);
    let Some((&d0, &s0)) = dims.next() else {
        return Some(1);
    };
    // Each outer dimension must step over the whole inner block.
    let mut span = d0 * s0;
    for (&d, &st) in dims {
        if st != span {
            return None;
        }
        span = d * st;
    }
    Some(s0)
}

/// The offsets of every index of one group of dimensions, in row-major order.
fn group_offsets(shape: &[usize], strides: &[usize], base: usize) -> Vec<usize> {
    let mut offs = Vec::with_capacity(shape_size(shape));
    offs.push(base);
    for (&d, &st) in shape.iter().zip(strides) {
        let prev = std::mem::take(&mut offs);
        offs.reserve(prev.len() * d);
        for o in prev {
            offs.extend((0..d).map(|i| o + i * st));
        }
    }
    offs
}

impl MatrixView {
    /// `layout` read as a matrix whose rows are its first `row_dims` dimensions; an error
    /// unless `1 <= row_dims < layout.dims()`.
    pub fn new(layout: Layout, row_dims: usize) -> Result<MatrixView> {
        if row_dims == 0 || row_dims >= layout.dims() {
            return Err(Error::shape(
                "matrix view",
                &[layout.shape()],
                format!("{row_dims} row dimensions leave no rows or no columns"),
            ));
        }
        Ok(MatrixView { layout, row_dims })
    }

    /// A plain `[rows, cols]` layout read as a matrix.
    pub fn matrix(layout: &Layout) -> Result<MatrixView> {
        if layout.dims() != 2 {
            return Err(Error::shape(
                "matrix view",
                &[layout.shape()],
                "a matrix layout has rank 2",
            ));
        }
        MatrixView::new(layout.clone(), 1)
    }

    /// The layout the matrix is read through.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// How many leading dimensions index rows.
    pub fn row_dims(&self) -> usize {
        self.row_dims
    }

    /// Rows: the product of the row dimensions.
    pub fn rows(&self) -> usize {
        shape_size(&self.layout.shape()[..self.row_dims])
    }

    /// Columns: the product of the column dimensions.
    pub fn cols(&self) -> usize {
        shape_size(&self.layout.shape()[self.row_dims..])
    }

    /// The transposed matrix: the column dimensions first (a permuted view, no copy).
    pub fn transpose(&self) -> MatrixView {
        let (r, n) = (self.row_dims, self.layout.dims());
        let order: Vec<usize> = (r..n).chain(0..r).collect();
        MatrixView {
            layout: self
                .layout
                .permute(&order)
                .expect("a permutation of the view's dims"),
            row_dims: n - r,
        }
    }

    /// The view as a plain `[rows, cols]` layout, where each group of dimensions has
    /// evenly spaced positions (then every backend's matmul reads it in place).
    pub fn as_matrix(&self) -> Option<Layout> {
        let (sh, st) = (self.layout.shape(), self.layout.strides());
        let r = self.row_dims;
        let rs = merged(&sh[..r], &st[..r])?;
        let cs = merged(&sh[r..], &st[r..])?;
        Layout::new(
            smallvec![self.rows(), self.cols()],
            smallvec![rs, cs],
            self.layout.offset(),
        )
        .ok()
    }

    /// The position of every row (the layout's offset included) and of every column:
    /// element `(r, c)` is at `rows[r] + cols[c]`.
    pub fn offsets(&self) -> (Vec<usize>, Vec<usize>) {
        let (sh, st) = (self.layout.shape(), self.layout.strides());
        let r = self.row_dims;
        (
            group_offsets(&sh[..r], &st[..r], self.layout.offset()),
            group_offsets(&sh[r..], &st[r..], 0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every element's position, by the layout and by the offsets, agree.
    fn check(v: &MatrixView) {
        let (ro, co) = v.offsets();
        assert_eq!((ro.len(), co.len()), (v.rows(), v.cols()));
        let l = v.layout();
        let mut idx = vec![0; l.dims()];
        let plain = v.as_matrix();
        for (r, &rp) in ro.iter().enumerate() {
            for (c, &cp) in co.iter().enumerate() {
                crate::layout::to_index(r * v.cols() + c, l.shape(), &mut idx);
                assert_eq!(rp + cp, l.position(&idx), "element ({r}, {c})");
                if let Some(m) = &plain {
                    assert_eq!(m.position(&[r, c]), rp + cp);
                }
            }
        }
    }

    #[test]
    fn offsets_match_the_layout() {
        // A window view [Cin, KH, KW, B, OH, OW] over [Cin=2, B=3, 6, 7] with stride 2.
        let window = Layout::new(
            smallvec![2, 3, 3, 3, 2, 3],
            smallvec![126, 7, 1, 42, 14, 2],
            5,
        )
        .unwrap();
        let v = MatrixView::new(window, 3).unwrap();
        assert_eq!((v.rows(), v.cols()), (18, 18));
        assert!(v.as_matrix().is_none());
        check(&v);
        check(&v.transpose());
        // Contiguous and permuted plain matrices merge.
        let c = MatrixView::new(Layout::contiguous(&[2, 3, 4, 5]), 2).unwrap();
        assert_eq!(c.as_matrix().unwrap().strides(), &[20, 1]);
        check(&c);
        let t = c.transpose();
        assert_eq!(t.as_matrix().unwrap().strides(), &[1, 20]);
        check(&t);
        // Size-1 dimensions do not break a merge.
        let one = MatrixView::new(Layout::new([1, 4, 1, 3], [99, 3, 7, 1], 0).unwrap(), 2);
        assert_eq!(one.unwrap().as_matrix().unwrap().strides(), &[3, 1]);
    }

    #[test]
    fn bad_splits_are_errors() {
        assert!(MatrixView::new(Layout::contiguous(&[2, 3]), 0).is_err());
        assert!(MatrixView::new(Layout::contiguous(&[2, 3]), 2).is_err());
        assert!(MatrixView::matrix(&Layout::contiguous(&[2, 3, 4])).is_err());
    }
}
