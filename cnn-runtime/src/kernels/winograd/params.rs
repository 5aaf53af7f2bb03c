//! The weights of a Winograd convolution: the filter transform `U = G g Gᵀ` (in f64,
//! at load time, batch norm folded in) and their packing in panels of 16 output channels.

use super::*;

/// `G` of F(2, 3): the filter transform of F(2x2, 3x3).
pub(super) const G2: [[f64; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// `G` of F(4, 3): the filter transform, `U = G g Gᵀ`, on the interpolation points `0,
/// 1, -1, 1/2, -2, ∞` (row `i`: `p_i^k / prod_{j != i} (p_i - p_j)`). Against the
/// symmetric `0, ±1, ±2` (Lavin's) they halve the worst float32 error of a tile
/// (docs/PERFORMANCE.md, "Accuracy of F(4x4)"), for two more operations in `Bᵀ d` and
/// two in `Aᵀ m`.
pub(super) const G: [[f64; 3]; ALPHA] = [
    [1.0, 0.0, 0.0],
    [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0],
    [-1.0 / 3.0, 1.0 / 3.0, -1.0 / 3.0],
    [-16.0 / 15.0, -8.0 / 15.0, -4.0 / 15.0],
    [1.0 / 15.0, -2.0 / 15.0, 4.0 / 15.0],
    [0.0, 0.0, 1.0],
];

/// Weights and bias of a 3x3 convolution, transformed and packed for
/// [`winograd_conv3x3`] at load time.
#[derive(Clone, Debug, PartialEq)]
pub struct WinogradParams {
    /// Output channels.
    pub(super) out: usize,
    /// Input channels.
    pub(super) in_channels: usize,
    /// Output tile side: 4 (F(4x4, 3x3)) or 2 (F(2x2, 3x3)).
    pub(super) tile: usize,
    /// `[alpha²][ceil(out/16)][in_channels]` rows of 16 output channels (`alpha = tile +
    /// 2`): `G g Gᵀ` of each filter, batch norm folded in, zeros past `out`.
    pub(super) weight: Buf<Row16>,
    /// `[ceil(out/16)][16]`, batch norm folded in, zeros past `out`.
    pub(super) bias: Buf<Row16>,
}

#[cfg(feature = "alloc")]
impl crate::buf::Embed for WinogradParams {
    fn parts(&self) -> crate::buf::Parts {
        use crate::buf::row_bytes;
        crate::buf::Parts {
            dims: alloc::vec![self.out, self.in_channels, self.tile],
            bufs: alloc::vec![
                (true, row_bytes(&self.weight)),
                (true, row_bytes(&self.bias))
            ],
        }
    }
}

impl WinogradParams {
    #[cfg(feature = "alloc")]
    /// Builds the parameters from a PyTorch `Conv2d` weight `[out, in_channels, 3, 3]`
    /// (groups 1) and its optional bias `[out]`; `bn` is a batch norm that follows the
    /// convolution, folded in as in [`ConvParams::from_torch`](crate::kernels::conv::ConvParams::from_torch).
    /// The filter transform is computed in f64 and rounded once.
    ///
    /// # Panics
    ///
    /// If a length does not match the dimensions (the caller has checked them).
    pub fn from_torch(
        out: usize,
        in_channels: usize,
        weight: &[f32],
        bias: Option<&[f32]>,
        bn: Option<&Affine>,
    ) -> WinogradParams {
        Self::with_tile(4, out, in_channels, weight, bias, bn)
    }

    #[cfg(feature = "alloc")]
    /// [`from_torch`](Self::from_torch) for output tiles of `tile` x `tile` pixels: 4
    /// (F(4x4, 3x3), 36 transformed values per filter) or 2 (F(2x2, 3x3), 16: 2.25x fewer
    /// weight bytes, 1.8x more multiplications; see [`winograd_tile`]).
    ///
    /// # Panics
    ///
    /// If `tile` is not 2 or 4, or a length does not match the dimensions.
    pub fn with_tile(
        tile: usize,
        out: usize,
        in_channels: usize,
        weight: &[f32],
        bias: Option<&[f32]>,
        bn: Option<&Affine>,
    ) -> WinogradParams {
        assert!(
            tile == 2 || tile == 4,
            "WinogradParams: tile {tile}, not 2 or 4"
        );
        let (weight, bias) = fold_bn(out, in_channels * 9, weight, bias, bn);
        let panels = out.div_ceil(PANEL);
        let xi = (tile + 2) * (tile + 2);
        let mut u = vec![Row16([0.0; PANEL]); xi * panels * in_channels];
        for o in 0..out {
            for c in 0..in_channels {
                let g = &weight[(o * in_channels + c) * 9..][..9];
                let t = transform_filter(tile, g);
                for (xi, &v) in t[..xi].iter().enumerate() {
                    u[(xi * panels + o / PANEL) * in_channels + c].0[o % PANEL] = v as f32;
                }
            }
        }
        WinogradParams {
            out,
            in_channels,
            tile,
            weight: u.into(),
            bias: pack_bias(out, &bias).into(),
        }
    }

    /// Parameters computed at compile time ([`crate::buf::Embed`]): dims
    /// `[out, in_channels, tile]`, the transformed weight and bias panels.
    #[doc(hidden)]
    pub const fn from_static(
        dims: [usize; 3],
        weight: &'static [Row16],
        bias: &'static [Row16],
    ) -> WinogradParams {
        let [out, in_channels, tile] = dims;
        WinogradParams {
            out,
            in_channels,
            tile,
            weight: Buf::Static(weight),
            bias: Buf::Static(bias),
        }
    }
}

/// `G g Gᵀ` of one 3x3 filter (row-major) for output tiles of `tile` (4 or 2) pixels
/// a side, in f64: `alpha²` values (`alpha = tile + 2`), row-major `alpha` x `alpha`,
/// then zeros.
pub(super) fn transform_filter(tile: usize, g: &[f32]) -> [f64; XI] {
    let a = tile + 2;
    let gm = |i: usize, k: usize| if tile == 2 { G2[i][k] } else { G[i][k] };
    // gg = G g: alpha x 3.
    let mut gg = [[0.0f64; 3]; ALPHA];
    for (i, row) in gg.iter_mut().enumerate().take(a) {
        for (j, x) in row.iter_mut().enumerate() {
            *x = (0..3).map(|k| gm(i, k) * f64::from(g[k * 3 + j])).sum();
        }
    }
    let mut u = [0.0f64; XI];
    for i in 0..a {
        for j in 0..a {
            u[i * a + j] = (0..3).map(|k| gg[i][k] * gm(j, k)).sum();
        }
    }
    u
}
