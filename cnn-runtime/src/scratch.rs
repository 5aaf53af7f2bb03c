//! Per-thread activation memory for models too large for stack arenas.
//!
//! A generated model keeps its activations in two arenas whose sizes the macro computed.
//! Up to [`STACK_LIMIT`] bytes they are arrays on the stack; above that (a 224x224 network
//! would overflow a thread's stack) `forward` borrows this thread's scratch buffer instead:
//! allocated on the first call on a thread, grown if a bigger model needs more, and
//! reused by every later call, so `forward` still performs no allocation per inference.

use std::cell::Cell;
use std::vec::Vec;

pub use crate::arena::STACK_LIMIT;

thread_local! {
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// This thread's scratch buffer, borrowed until dropped.
pub struct Scratch {
    buf: Vec<f32>,
}

impl Scratch {
    /// Borrows at least `len` values of this thread's buffer (growing it if needed; a
    /// nested borrow on the same thread gets a buffer of its own).
    #[inline]
    pub fn take(len: usize) -> Scratch {
        let mut buf = SCRATCH.with(Cell::take);
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        Scratch { buf }
    }

    /// The buffer.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.buf
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = core::mem::take(&mut self.buf);
        SCRATCH.with(|cell| {
            // Keep the larger of this buffer and one a nested borrow may have returned.
            let other = cell.take();
            cell.set(if other.len() > buf.len() { other } else { buf });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_and_grown() {
        let p1 = {
            let mut s = Scratch::take(100);
            assert!(s.as_mut_slice().len() >= 100);
            s.as_mut_slice().as_ptr()
        };
        let p2 = {
            let mut s = Scratch::take(50);
            s.as_mut_slice().as_ptr()
        };
        assert_eq!(p1, p2, "the buffer is reused");
        let mut outer = Scratch::take(10);
        let mut inner = Scratch::take(1000);
        assert!(inner.as_mut_slice().len() >= 1000);
        assert!(outer.as_mut_slice().len() >= 100);
        drop(inner);
        drop(outer);
        assert!(
            Scratch::take(0).as_mut_slice().len() >= 1000,
            "the larger one is kept"
        );
    }
}
