//! A thread's buffer for kernel scratch the model's arena does not provide (a Winograd
//! layer called without planned scratch, the packed input of 1x1 channel tiles):
//! allocated on the thread's first use, grown when a call needs more, reused after, so
//! the kernels allocate only on a thread's first calls. Separate from
//! [`crate::scratch`], which a model's `forward` may hold while calling the kernels.

use std::cell::Cell;
use std::vec::Vec;

std::thread_local! {
    static BUF: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// This thread's kernel buffer, borrowed until dropped (a nested borrow, which the
/// kernels never make, would get a fresh vector).
pub(crate) struct ThreadBuf(Vec<f32>);

impl ThreadBuf {
    /// Borrows at least `len` floats from a 64-byte boundary ([`ThreadBuf::aligned`]).
    pub(crate) fn take(len: usize) -> ThreadBuf {
        let mut buf = BUF.with(Cell::take);
        if buf.len() < len + 16 {
            buf.resize(len + 16, 0.0);
        }
        ThreadBuf(buf)
    }

    /// The buffer from its first 64-byte boundary: at least the `len` floats asked for.
    pub(crate) fn aligned(&mut self) -> &mut [f32] {
        let off = self.0.as_ptr().align_offset(64).min(16);
        &mut self.0[off..]
    }
}

impl Drop for ThreadBuf {
    fn drop(&mut self) {
        let buf = core::mem::take(&mut self.0);
        BUF.with(|cell| {
            // Keep the larger of this buffer and one a nested borrow may have returned.
            let other = cell.take();
            cell.set(if other.len() > buf.len() { other } else { buf });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::ThreadBuf;

    #[test]
    fn aligned_reused_and_grown() {
        let p = {
            let mut b = ThreadBuf::take(100);
            let s = b.aligned();
            assert!(s.len() >= 100);
            assert_eq!(s.as_ptr().align_offset(64), 0);
            s.as_ptr()
        };
        // The same allocation again for a smaller request on this thread.
        assert_eq!(ThreadBuf::take(50).aligned().as_ptr(), p);
        // A nested borrow gets a buffer of its own; the larger one is kept.
        let mut outer = ThreadBuf::take(10);
        let mut inner = ThreadBuf::take(1000);
        assert_ne!(outer.aligned().as_ptr(), inner.aligned().as_ptr());
        drop(inner);
        drop(outer);
        assert!(ThreadBuf::take(0).aligned().len() >= 1000);
    }
}
