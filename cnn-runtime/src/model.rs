//! The [`Model`] trait implemented by every struct that `cnn_model!` generates.

use crate::error::{LoadError, ShapeError};

/// A compiled network: implemented by the struct `cnn_model!` generates.
///
/// The generated code provides the shapes, the constants, weight loading and
/// [`Model::forward_raw`], a straight line of kernel calls with every dimension a
/// compile-time constant. The other methods are conveniences built on it, each
/// checking the length of what it is given and returning a [`ShapeError`] on a mismatch.
///
/// `forward`, `forward_raw`, `forward_flat_into` and `forward_batch_into` never allocate on
/// the heap: the activations live in arenas on the stack whose sizes the macro computed
/// (see `summary()` and [`Model::ARENA_BYTES`]).
pub trait Model: Sized + Send + Sync {
    /// The input as nested arrays: `[[[f32; W]; H]; C]`.
    type Input;
    /// The output: `[f32; N]` for a vector output, `[[[f32; W]; H]; C]` for a spatial one.
    type Output;
    /// The input shape, `[C, H, W]`.
    const INPUT_SHAPE: &'static [usize];
    /// The output shape, `[N]` or `[C, H, W]`.
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
    /// Bytes of activation memory (the stack arenas) one forward pass uses.
    const ARENA_BYTES: usize;
    /// The tensors a weight file must hold: keys and shapes of the PyTorch `state_dict()`
    /// (batch norms' `num_batches_tracked` may also be present and is ignored).
    const WEIGHTS: &'static [crate::load::TensorSpec];

    /// Loads the weights from the bytes of a safetensors file holding the equivalent
    /// PyTorch module's `state_dict()`. Strict like `load_state_dict(strict=True)`.
    fn from_safetensors(bytes: &[u8]) -> Result<Box<Self>, LoadError>;

    /// Runs the network on an input given as nested arrays.
    fn forward(&self, input: &Self::Input) -> Self::Output;

    /// Runs the network on `input` (exactly [`Model::INPUT_LEN`] values, CHW order) and
    /// writes exactly [`Model::OUTPUT_LEN`] values to `output`.
    ///
    /// This is the compiled network itself. The lengths are a precondition: a wrong
    /// length panics. Prefer [`Model::forward_flat_into`], which checks them.
    #[doc(hidden)]
    fn forward_raw(&self, input: &[f32], output: &mut [f32]);

    /// The per-layer table: name, op, output shape, parameters, MACs, and totals.
    fn summary() -> &'static str;

    /// Loads the weights from a safetensors file on disk.
    fn load(path: impl AsRef<std::path::Path>) -> Result<Box<Self>, LoadError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_safetensors(&bytes)
    }

    /// Runs the network on a flat input (`C*H*W` values in C, H, W order).
    ///
    /// Returns a [`ShapeError`] when the input does not have [`Model::INPUT_LEN`] values.
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
    /// (`n * OUTPUT_LEN` values). Allocates nothing.
    fn forward_batch_into(&self, inputs: &[f32], outputs: &mut [f32]) -> Result<(), ShapeError> {
        let n = inputs.len() / Self::INPUT_LEN;
        if inputs.len() % Self::INPUT_LEN != 0 {
            return Err(ShapeError::BatchLength {
                what: "inputs",
                item: Self::INPUT_LEN,
                got: inputs.len(),
            });
        }
        if outputs.len() != n * Self::OUTPUT_LEN {
            return Err(ShapeError::Length {
                what: "outputs",
                shape: format!("{n} x {:?}", Self::OUTPUT_SHAPE),
                expected: n * Self::OUTPUT_LEN,
                got: outputs.len(),
            });
        }
        for (x, y) in inputs
            .chunks_exact(Self::INPUT_LEN)
            .zip(outputs.chunks_exact_mut(Self::OUTPUT_LEN))
        {
            self.forward_raw(x, y);
        }
        Ok(())
    }

    /// Runs a batch in NCHW layout and returns `[N, ...OUTPUT_SHAPE]`: an `Array2` view of
    /// it for vector outputs (see [`Model::forward_array2`]), an `Array4` for spatial ones
    /// ([`Model::forward_array4`]).
    fn forward_ndarray(
        &self,
        batch: ndarray::ArrayView4<'_, f32>,
    ) -> Result<ndarray::ArrayD<f32>, ShapeError> {
        let (n, c, h, w) = batch.dim();
        if [c, h, w] != Self::INPUT_SHAPE {
            return Err(ShapeError::Batch {
                expected: Self::INPUT_SHAPE.to_vec(),
                got: vec![n, c, h, w],
            });
        }
        let mut out_shape = vec![n];
        out_shape.extend_from_slice(Self::OUTPUT_SHAPE);
        let mut out = ndarray::ArrayD::<f32>::zeros(out_shape);
        let flat_out = out
            .as_slice_mut()
            .expect("a freshly allocated array is contiguous");
        match batch.as_slice() {
            Some(flat_in) => self.forward_batch_into(flat_in, flat_out)?,
            None => {
                let mut item = vec![0.0f32; Self::INPUT_LEN];
                for (i, image) in batch.outer_iter().enumerate() {
                    for (dst, src) in item.iter_mut().zip(image.iter()) {
                        *dst = *src;
                    }
                    let y = &mut flat_out[i * Self::OUTPUT_LEN..(i + 1) * Self::OUTPUT_LEN];
                    self.forward_raw(&item, y);
                }
            }
        }
        Ok(out)
    }

    /// Runs a batch in NCHW layout of a model with a vector output: `[N, OUTPUT_LEN]`.
    ///
    /// Returns a [`ShapeError`] for a wrong input shape or when the output is spatial.
    fn forward_array2(
        &self,
        batch: ndarray::ArrayView4<'_, f32>,
    ) -> Result<ndarray::Array2<f32>, ShapeError> {
        let out = self.forward_ndarray(batch)?;
        out.into_dimensionality::<ndarray::Ix2>()
            .map_err(|_| ShapeError::OutputRank {
                wanted: 1,
                shape: Self::OUTPUT_SHAPE.to_vec(),
            })
    }

    /// Runs a batch in NCHW layout of a model with a spatial output: `[N, C, H, W]`.
    ///
    /// Returns a [`ShapeError`] for a wrong input shape or when the output is a vector.
    fn forward_array4(
        &self,
        batch: ndarray::ArrayView4<'_, f32>,
    ) -> Result<ndarray::Array4<f32>, ShapeError> {
        let out = self.forward_ndarray(batch)?;
        out.into_dimensionality::<ndarray::Ix4>()
            .map_err(|_| ShapeError::OutputRank {
                wanted: 3,
                shape: Self::OUTPUT_SHAPE.to_vec(),
            })
    }
}
