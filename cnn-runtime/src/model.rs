//! The [`Model`] trait implemented by every struct that `cnn_model!` generates.

#[cfg(feature = "alloc")]
use crate::error::LoadError;
use crate::error::ShapeError;
#[cfg(feature = "alloc")]
use alloc::{boxed::Box, vec, vec::Vec};

/// A compiled network: implemented by the struct `cnn_model!` generates.
///
/// The generated code provides the shapes, the constants, weight loading and
/// [`Model::forward_raw`], a straight line of kernel calls with every dimension a
/// compile-time constant. The other methods are conveniences built on it, each
/// checking the length of what it is given and returning a [`ShapeError`] on a mismatch.
///
/// `forward`, `forward_in`, `forward_flat_into` and `forward_batch_into` never allocate
/// on the heap: the activations live in one arena whose size the macro computed (see
/// `summary()` and [`Model::ARENA_BYTES`]): the caller's ([`Model::forward_in`]) or one on
/// the stack (`forward`; with `std`, arenas above 4 KiB use a per-thread scratch buffer,
/// allocated on a thread's first call).
///
/// Without the `alloc` feature (`default-features = false`) the trait has no loading and
/// no `Vec`/`Box` methods: models embed their weights (`#[weights = ..]`, `embedded()`).
pub trait Model: Sized + Send + Sync {
    /// The input as nested arrays: `[[[f32; W]; H]; C]` for an image, `[[f32; L]; C]` for
    /// a 1-D signal, `[f32; N]` for a vector.
    type Input;
    /// The output, nested the same way: `[f32; N]`, `[[f32; L]; C]` or `[[[f32; W]; H]; C]`.
    type Output;
    /// The input shape, `[C, H, W]`, `[C, L]` or `[N]`.
    const INPUT_SHAPE: &'static [usize];
    /// The output shape, `[N]`, `[C, L]` or `[C, H, W]`.
    const OUTPUT_SHAPE: &'static [usize];
    /// Number of input values, `C * H * W`.
    const INPUT_LEN: usize;
    /// Number of output values.
    const OUTPUT_LEN: usize;
    /// Learned parameters, counted as torch's `parameters()` (BN running stats excluded).
    const PARAMS: usize;
    /// Multiply-accumulates of one forward pass: conv `out*H'*W'*(in/groups)*kh*kw`,
    /// linear `in*out`.
    const MACS: usize;
    /// The activation memory of one forward pass, [`crate::Arena`]`<N>`: what
    /// [`Model::forward_in`] takes. `Default` and `Arena::new()` (const) give one.
    type Arena: Default + AsMut<[f32]>;
    /// Bytes of activation memory one forward pass uses: the size of [`Model::Arena`]'s
    /// floats (RAM).
    const ARENA_BYTES: usize;
    /// Bytes of the weights as the model holds them (packed panels, batch norm folded in,
    /// padding of partial panels included): what an embedded model puts in the binary's
    /// read-only data (flash), or what `from_safetensors` allocates.
    const WEIGHT_BYTES: usize;
    /// Bytes of buffers the kernels keep on the stack during a forward pass, beyond
    /// ordinary locals: the convolution band buffer (64 KiB; 16 KiB without `std`) when the
    /// model has a direct or depthwise convolution or a max/average pool, else 0. `forward` adds its arena when that is on the
    /// stack; `forward_in` does not.
    const STACK_BYTES: usize;
    /// The tensors a weight file must hold: keys and shapes of the PyTorch `state_dict()`
    /// (batch norms' `num_batches_tracked` may also be present and is ignored).
    const WEIGHTS: &'static [TensorSpec];
    /// The forward pass's steps in order, one per kernel call (a layer, or layers fused
    /// into one call): what `profile::last_steps` times with the `profile`
    /// feature. Generated; empty for a hand-written implementation.
    const STEPS: &'static [crate::StepInfo] = &[];

    /// Loads the weights from the bytes of a safetensors file holding the equivalent
    /// PyTorch module's `state_dict()`. Strict like `load_state_dict(strict=True)`.
    #[cfg(feature = "alloc")]
    fn from_safetensors(bytes: &[u8]) -> Result<Box<Self>, LoadError>;

    /// Runs the network on an input given as nested arrays.
    fn forward(&self, input: &Self::Input) -> Self::Output;

    /// Runs the network with the caller's arena as activation memory: no stack arena, no
    /// allocation, the same results as [`Model::forward`] bit for bit. The arena's
    /// contents before and after the call mean nothing.
    ///
    /// ```ignore
    /// static ARENA: cnn::ArenaCell<{ LeNet5::ARENA_LEN }> = cnn::ArenaCell::new();
    /// let mut arena = ARENA.lock().unwrap();
    /// let mut logits = [0.0; 10];
    /// LeNet5::embedded().forward_in(&image, &mut logits, &mut arena);
    /// ```
    fn forward_in(&self, input: &Self::Input, output: &mut Self::Output, arena: &mut Self::Arena);

    /// Runs the network on `input` (exactly [`Model::INPUT_LEN`] values, CHW order) and
    /// writes exactly [`Model::OUTPUT_LEN`] values to `output`, on the best instruction set
    /// of the CPU (see [`crate::cpu`]).
    ///
    /// This is the compiled network itself. The lengths are a precondition: a wrong
    /// length panics. Prefer [`Model::forward_flat_into`], which checks them.
    #[doc(hidden)]
    fn forward_raw(&self, input: &[f32], output: &mut [f32]);

    /// The straight line of kernel calls, generated by `cnn_model!` as `#[inline(always)]`
    /// so that [`crate::cpu::dispatch`] can compile it once per instruction set; `arena`
    /// holds at least `ARENA_BYTES / 4` floats. Same preconditions as
    /// [`Model::forward_raw`]; call that instead.
    #[doc(hidden)]
    fn forward_body(&self, input: &[f32], output: &mut [f32], arena: &mut [f32]);

    /// The per-layer table: name, op, output shape, parameters, MACs, and totals.
    fn summary() -> &'static str;

    /// Loads the weights from a safetensors file on disk.
    #[cfg(feature = "std")]
    fn load(path: impl AsRef<std::path::Path>) -> Result<Box<Self>, LoadError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_safetensors(&bytes)
    }

    /// Runs the network on a flat input (`C*H*W` values in C, H, W order; `C*L` in C, L
    /// order for a signal).
    ///
    /// Returns a [`ShapeError`] when the input does not have [`Model::INPUT_LEN`] values.
    #[cfg(feature = "alloc")]
    fn forward_flat(&self, input: &[f32]) -> Result<Vec<f32>, ShapeError> {
        let mut out = vec![0.0; Self::OUTPUT_LEN];
        self.forward_flat_into(input, &mut out)?;
        Ok(out)
    }

    /// Like [`Model::forward_flat`], writing into a caller-provided output; allocates nothing.
    fn forward_flat_into(&self, input: &[f32], output: &mut [f32]) -> Result<(), ShapeError> {
        ShapeError::check("input", Self::INPUT_SHAPE, Self::INPUT_LEN, input.len())?;
        ShapeError::check("output", Self::OUTPUT_SHAPE, Self::OUTPUT_LEN, output.len())?;
        self.forward_raw(input, output);
        Ok(())
    }

    /// Runs a batch stored back to back (`n * INPUT_LEN` values) into `outputs`
    /// (`n * OUTPUT_LEN` values). Allocates nothing. With the `parallel` feature the images
    /// are spread over the thread pool ([`crate::pool::num_threads`] threads: one image per
    /// thread at a time, each with its own arena); the results are the same bits as one
    /// image at a time.
    fn forward_batch_into(&self, inputs: &[f32], outputs: &mut [f32]) -> Result<(), ShapeError> {
        let n = inputs.len() / Self::INPUT_LEN;
        if !inputs.len().is_multiple_of(Self::INPUT_LEN) {
            return Err(ShapeError::BatchLength {
                what: "inputs",
                item: Self::INPUT_LEN,
                got: inputs.len(),
            });
        }
        if outputs.len() != n * Self::OUTPUT_LEN {
            return Err(ShapeError::Length {
                what: "outputs",
                batch: Some(n),
                shape: Self::OUTPUT_SHAPE,
                expected: n * Self::OUTPUT_LEN,
                got: outputs.len(),
            });
        }
        if n > 1 && crate::pool::num_threads() > 1 {
            // One image per part, claimed by the pool's threads as they come free; each
            // image runs on one thread (its kernels see the pool busy and do not split),
            // with that thread's own arena.
            crate::pool::run_chunks_mut(outputs, Self::OUTPUT_LEN, &|i, y| {
                let x = &inputs[i * Self::INPUT_LEN..(i + 1) * Self::INPUT_LEN];
                self.forward_raw(x, y);
            });
            return Ok(());
        }
        self.forward_batch_sequential(inputs, outputs);
        Ok(())
    }

    /// The batch on the calling thread, image after image.
    #[doc(hidden)]
    fn forward_batch_sequential(&self, inputs: &[f32], outputs: &mut [f32]) {
        for (x, y) in inputs
            .chunks_exact(Self::INPUT_LEN)
            .zip(outputs.chunks_exact_mut(Self::OUTPUT_LEN))
        {
            self.forward_raw(x, y);
        }
    }

    /// Runs a batch (`[N, ...INPUT_SHAPE]`: NCHW for images, NCL for 1-D signals, NF for
    /// vectors) and returns `[N, ...OUTPUT_SHAPE]`.
    ///
    /// Returns a [`ShapeError`] when the batch's item shape is not [`Model::INPUT_SHAPE`].
    #[cfg(feature = "ndarray")]
    fn forward_ndarray<D: ndarray::Dimension>(
        &self,
        batch: ndarray::ArrayView<'_, f32, D>,
    ) -> Result<ndarray::ArrayD<f32>, ShapeError> {
        let shape = batch.shape();
        if shape.len() != Self::INPUT_SHAPE.len() + 1 || shape[1..] != *Self::INPUT_SHAPE {
            return Err(ShapeError::Batch {
                expected: Self::INPUT_SHAPE.to_vec(),
                got: shape.to_vec(),
            });
        }
        let n = shape[0];
        let mut out_shape = vec![n];
        out_shape.extend_from_slice(Self::OUTPUT_SHAPE);
        let mut out = ndarray::ArrayD::<f32>::zeros(out_shape);
        let flat_out = out
            .as_slice_mut()
            .expect("a freshly allocated array is contiguous");
        // A non-contiguous view is copied into standard layout first.
        let standard = batch.as_standard_layout();
        let flat_in = standard.as_slice().expect("standard layout is contiguous");
        self.forward_batch_into(flat_in, flat_out)?;
        Ok(out)
    }

    /// Runs a batch in NCHW layout of a model with a vector output: `[N, OUTPUT_LEN]`.
    ///
    /// Returns a [`ShapeError`] for a wrong input shape or when the output is spatial.
    #[cfg(feature = "ndarray")]
    fn forward_array2<D: ndarray::Dimension>(
        &self,
        batch: ndarray::ArrayView<'_, f32, D>,
    ) -> Result<ndarray::Array2<f32>, ShapeError> {
        let out = self.forward_ndarray(batch)?;
        out.into_dimensionality::<ndarray::Ix2>()
            .map_err(|_| ShapeError::OutputRank {
                wanted: 1,
                shape: Self::OUTPUT_SHAPE.to_vec(),
            })
    }

    /// Runs a batch of a model with a 1-D signal output: `[N, C, L]`.
    ///
    /// Returns a [`ShapeError`] for a wrong input shape or when the output is not `[C, L]`.
    #[cfg(feature = "ndarray")]
    fn forward_array3<D: ndarray::Dimension>(
        &self,
        batch: ndarray::ArrayView<'_, f32, D>,
    ) -> Result<ndarray::Array3<f32>, ShapeError> {
        let out = self.forward_ndarray(batch)?;
        out.into_dimensionality::<ndarray::Ix3>()
            .map_err(|_| ShapeError::OutputRank {
                wanted: 2,
                shape: Self::OUTPUT_SHAPE.to_vec(),
            })
    }

    /// Runs a batch in NCHW layout of a model with a spatial output: `[N, C, H, W]`.
    ///
    /// Returns a [`ShapeError`] for a wrong input shape or when the output is a vector.
    #[cfg(feature = "ndarray")]
    fn forward_array4<D: ndarray::Dimension>(
        &self,
        batch: ndarray::ArrayView<'_, f32, D>,
    ) -> Result<ndarray::Array4<f32>, ShapeError> {
        let out = self.forward_ndarray(batch)?;
        out.into_dimensionality::<ndarray::Ix4>()
            .map_err(|_| ShapeError::OutputRank {
                wanted: 3,
                shape: Self::OUTPUT_SHAPE.to_vec(),
            })
    }
}

/// One tensor a model needs.
#[derive(Clone, Copy, Debug)]
pub struct TensorSpec {
    /// The `state_dict()` key, e.g. `conv1.weight`.
    pub key: &'static str,
    /// The exact shape the model expects, PyTorch layout (e.g. `[out, in/groups, kh, kw]`).
    pub shape: &'static [usize],
}
