//! [`Buf`]: where a layer's packed weights live — on the heap when loaded at run time,
//! in a `static` when the compiler computed them from embedded weights.

use core::ops::Deref;

#[cfg(feature = "alloc")]
use alloc::boxed::Box;

/// A read-only buffer of packed weights: owned (loaded at run time by
/// `from_safetensors`) or `'static` (embedded: repacked when the macro expanded and
/// stored in the binary's read-only data, so an embedded model needs no allocator).
pub enum Buf<T: 'static> {
    /// Computed at load time.
    #[cfg(feature = "alloc")]
    Owned(Box<[T]>),
    /// Computed at compile time, stored in a `static`.
    Static(&'static [T]),
}

impl<T> Deref for Buf<T> {
    type Target = [T];
    #[inline(always)]
    fn deref(&self) -> &[T] {
        match self {
            #[cfg(feature = "alloc")]
            Buf::Owned(b) => b,
            Buf::Static(s) => s,
        }
    }
}

#[cfg(feature = "alloc")]
impl<T> From<Box<[T]>> for Buf<T> {
    fn from(b: Box<[T]>) -> Self {
        Buf::Owned(b)
    }
}

#[cfg(feature = "alloc")]
impl<T> From<alloc::vec::Vec<T>> for Buf<T> {
    fn from(v: alloc::vec::Vec<T>) -> Self {
        Buf::Owned(v.into_boxed_slice())
    }
}

impl<T: Clone> Clone for Buf<T> {
    fn clone(&self) -> Self {
        match self {
            #[cfg(feature = "alloc")]
            Buf::Owned(b) => Buf::Owned(b.clone()),
            Buf::Static(s) => Buf::Static(s),
        }
    }
}

impl<T: PartialEq> PartialEq for Buf<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

/// A layer's parameters as the compiler embeds them: the dimensions, then each buffer as
/// little-endian bytes (`true`: rows of 16 floats, [`Aligned::rows`]; `false`: floats,
/// [`Aligned::floats`]), in the order of the type's `from_static` arguments.
#[cfg(feature = "alloc")]
#[derive(Debug)]
pub struct Parts {
    /// The scalar fields, in the order of `from_static`'s `dims` argument.
    pub dims: alloc::vec::Vec<usize>,
    /// The buffers, in the order of `from_static`'s slice arguments.
    pub bufs: alloc::vec::Vec<(bool, alloc::vec::Vec<u8>)>,
}

/// Parameters the compiler can store in `static`s ([`Parts`]); each implementing type
/// also has `const fn from_static(dims, bufs..)` building it back.
#[cfg(feature = "alloc")]
pub trait Embed {
    /// Dimensions and buffers, as `from_static` takes them.
    fn parts(&self) -> Parts;
}

impl<T: core::fmt::Debug> core::fmt::Debug for Buf<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Bytes on a 64-byte boundary: how the compiler stores a layer's packed weights in a
/// `static` (safetensors data carries no alignment; these bytes are the repacked copy,
/// little-endian `f32`).
#[repr(C, align(64))]
pub struct Aligned<const N: usize>(pub [u8; N]);

impl<const N: usize> Aligned<N> {
    /// The bytes as `f32`s.
    ///
    /// Fails at compile time (this is evaluated in a `static` initialiser) on a
    /// big-endian target or when `N` is not a multiple of 4.
    pub const fn floats(&'static self) -> &'static [f32] {
        if cfg!(target_endian = "big") {
            panic!("embedded weights are stored little-endian");
        }
        assert!(
            N.is_multiple_of(4),
            "embedded f32 data must be a multiple of 4 bytes"
        );
        // SAFETY: the data is `N` initialised bytes, 64-byte aligned (more than `f32`
        // needs) and borrowed for 'static; `N / 4` floats cover exactly those bytes, and
        // every bit pattern is a valid `f32`. On a little-endian target (asserted above)
        // the bytes read as the floats the compiler wrote.
        unsafe { core::slice::from_raw_parts(self.0.as_ptr().cast::<f32>(), N / 4) }
    }

    /// The bytes as rows of 16 floats on 64-byte boundaries (a packed weight panel).
    ///
    /// Fails at compile time on a big-endian target or when `N` is not a multiple of 64.
    pub const fn rows(&'static self) -> &'static [crate::kernels::Row16] {
        if cfg!(target_endian = "big") {
            panic!("embedded weights are stored little-endian");
        }
        assert!(
            N.is_multiple_of(64),
            "embedded panels must be a multiple of 64 bytes"
        );
        // SAFETY: `Row16` is `repr(C, align(64))` around `[f32; 16]` (64 bytes, no
        // padding); the data is 64-byte aligned, `N / 64` rows cover exactly its `N`
        // bytes, it lives for 'static, and every bit pattern is a valid `f32`.
        unsafe {
            core::slice::from_raw_parts(self.0.as_ptr().cast::<crate::kernels::Row16>(), N / 64)
        }
    }
}

/// The little-endian bytes of `floats` (what [`Aligned::floats`] reads back).
#[cfg(feature = "alloc")]
pub fn float_bytes(floats: &[f32]) -> alloc::vec::Vec<u8> {
    floats.iter().flat_map(|f| f.to_le_bytes()).collect()
}

/// The little-endian bytes of `rows` (what [`Aligned::rows`] reads back).
#[cfg(feature = "alloc")]
pub fn row_bytes(rows: &[crate::kernels::Row16]) -> alloc::vec::Vec<u8> {
    rows.iter()
        .flat_map(|r| r.0.iter().flat_map(|f| f.to_le_bytes()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Row16;

    static FLOATS: Aligned<8> = Aligned([0, 0, 128, 63, 0, 0, 0, 192]);

    #[test]
    fn aligned_bytes_read_back_as_floats_and_rows() {
        assert_eq!(FLOATS.floats(), &[1.0, -2.0]);
        let rows = [Row16([1.5; 16]), Row16(core::array::from_fn(|i| i as f32))];
        let bytes = row_bytes(&rows);
        assert_eq!(bytes.len(), 128);
        // A static built from those bytes, as the compiler emits it.
        static ROWS: std::sync::OnceLock<&'static Aligned<128>> = std::sync::OnceLock::new();
        let a = ROWS.get_or_init(|| {
            let mut a = Box::new(Aligned([0u8; 128]));
            a.0.copy_from_slice(&bytes);
            Box::leak(a)
        });
        assert_eq!(a.rows(), &rows);
        assert_eq!(a.floats().len(), 32);
        assert_eq!(float_bytes(&[1.0, -2.0]), FLOATS.0);
        let b: Buf<f32> = Buf::Static(FLOATS.floats());
        assert_eq!(&*b, &[1.0, -2.0]);
        let o: Buf<f32> = vec![3.0].into();
        assert_eq!(&*o, &[3.0]);
    }
}
