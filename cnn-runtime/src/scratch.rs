//! Per-thread activation memory for models too large for stack arenas.
//!
//! A generated model keeps its activations in two arenas whose sizes the macro computed.
//! Up to [`STACK_LIMIT`] bytes (4 KiB) they are arrays on the stack; above that (a
//! 224x224 network would overflow a thread's stack, and zeroing a stack arena on every
//! call costs more than finding this buffer) `forward` borrows this thread's scratch buffer instead:
//! allocated on the first call on a thread, grown if a bigger model needs more, and
//! reused by every later call, so `forward` still performs no allocation per inference.
//! Its slice starts a 64-byte cache line, as an [`crate::Arena`] does. The kernels have a
//! second buffer per thread, the same way, for scratch the arena does not provide.

use std::cell::Cell;
use std::vec::Vec;

pub use crate::arena::STACK_LIMIT;

thread_local! {
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// The kernels' buffer, separate because `forward` may hold [`SCRATCH`] while it
    /// calls them: scratch the model's arena does not provide (a Winograd layer called
    /// without planned scratch).
    static KERNEL: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// This thread's scratch buffer, borrowed until dropped.
pub struct Scratch {
    buf: Vec<f32>,
    /// The thread's buffer it was taken from, and goes back to.
    slot: &'static std::thread::LocalKey<Cell<Vec<f32>>>,
}

/// Floats in a 64-byte cache line.
const LINE: usize = 16;

impl Scratch {
    /// Borrows at least `len` values of this thread's buffer (growing it if needed; a
    /// nested borrow on the same thread gets a buffer of its own).
    #[inline]
    pub fn take(len: usize) -> Scratch {
        Scratch::take_from(&SCRATCH, len)
    }

    /// As [`Scratch::take`], from the kernels' buffer of this thread (which kernels
    /// borrow while `forward` holds the other one; kernels never nest their borrows).
    #[inline]
    pub(crate) fn take_kernel(len: usize) -> Scratch {
        Scratch::take_from(&KERNEL, len)
    }

    #[inline]
    fn take_from(slot: &'static std::thread::LocalKey<Cell<Vec<f32>>>, len: usize) -> Scratch {
        let mut buf = slot.with(Cell::take);
        // Room to start on a cache line wherever the allocator put it.
        if buf.len() < len + LINE - 1 {
            buf.resize(len + LINE - 1, 0.0);
        }
        Scratch { buf, slot }
    }

    /// The buffer (at least the `len` values asked for), starting a 64-byte cache line.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        // At most LINE - 1 floats: an f32 pointer is 4-byte aligned, and `take` reserved
        // that much more.
        let skip = self.buf.as_ptr().align_offset(64).min(LINE - 1);
        &mut self.buf[skip..]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = core::mem::take(&mut self.buf);
        self.slot.with(|cell| {
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
            assert_eq!(s.as_mut_slice().as_ptr() as usize % 64, 0, "on a line");
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
        assert_eq!(inner.as_mut_slice().as_ptr() as usize % 64, 0, "on a line");
        assert!(outer.as_mut_slice().len() >= 100);
        drop(inner);
        drop(outer);
        assert!(
            Scratch::take(0).as_mut_slice().len() >= 1000,
            "the larger one is kept"
        );
        // The kernels' buffer is another one, taken while this thread's is held.
        let mut arena = Scratch::take(10);
        let mut kernel = Scratch::take_kernel(10);
        assert_ne!(
            arena.as_mut_slice().as_ptr(),
            kernel.as_mut_slice().as_ptr()
        );
        assert_eq!(kernel.as_mut_slice().as_ptr() as usize % 64, 0, "on a line");
    }
}
