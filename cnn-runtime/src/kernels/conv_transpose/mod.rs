//! Transposed 2-D convolution, PyTorch `ConvTranspose2d` (stride, padding, dilation,
//! groups; the output padding is implied by the output size).
//!
//! Scatter-free, by phase (sub-pixel) decomposition: the outputs `y = ry + SH*ty`,
//! `x = rx + SW*tx` of one phase `(ry, rx)` receive only the taps with
//! `ry + PH - ky*DH` and `rx + PW - kx*DW` divisible by the strides, each from input
//! `(ty + off(ky), tx + off(kx))`: an ordinary stride-1 correlation along the phase's
//! columns. Each phase row is computed by a register-blocked micro-kernel written over
//! the SIMD trait: `MR` output channels by one vector of consecutive phase columns, summed
//! over taps (outer) and input channels (inner) in registers, bias and activation
//! applied there, then stored (to every `SW`-th output column when `SW > 1`). Input
//! vectors that reach past the input's left or right edge are assembled from their valid
//! lanes and zeros, so nothing is copied or padded and nothing is allocated.

use super::activation::Act;
use super::geometry::Dims2d;
use super::norm::Affine;
use super::simd::{self, Simd, WithSimd};
use crate::buf::Buf;
use crate::cpu::{self, Level};

mod phases;
mod split;
#[cfg(feature = "alloc")]
#[allow(unused_imports)]
use alloc::{boxed::Box, vec, vec::Vec};
pub use phases::{depth_to_space, phase_axis, phase_to_space, PhaseAxis};
#[cfg(feature = "alloc")]
pub use phases::{phase_kernel_params, stride_kernel_params};
#[cfg(feature = "alloc")]
pub use split::phase_params;
pub use split::{phase_split_axis, phase_taps, phases_to_space};

/// Weights and bias of a transposed convolution, repacked for [`conv_transpose2d`].
#[derive(Clone, Debug, PartialEq)]
pub struct ConvTransposeParams {
    /// Input channels.
    in_channels: usize,
    /// Output channels per group.
    out_per_group: usize,
    /// Kernel height.
    kh: usize,
    /// Kernel width.
    kw: usize,
    /// Groups.
    groups: usize,
    /// `[groups][kh][kw][in/groups][out_per_group]`, batch norm folded in.
    weight: Buf<f32>,
    /// `[out]`, zeros when the layer has no bias, batch norm folded in.
    bias: Buf<f32>,
}

#[cfg(feature = "alloc")]
impl crate::buf::Embed for ConvTransposeParams {
    fn parts(&self) -> crate::buf::Parts {
        use crate::buf::float_bytes;
        crate::buf::Parts {
            dims: alloc::vec![
                self.in_channels,
                self.out_per_group,
                self.kh,
                self.kw,
                self.groups
            ],
            bufs: alloc::vec![
                (false, float_bytes(&self.weight)),
                (false, float_bytes(&self.bias))
            ],
        }
    }
}

impl ConvTransposeParams {
    #[cfg(feature = "alloc")]
    /// Builds the parameters from a PyTorch `ConvTranspose2d` weight, layout
    /// `[in, out/groups, kh, kw]`, and its optional bias `[out]`.
    ///
    /// `bn` is a batch norm that follows the layer (per output channel), folded in here:
    /// `w'[..][o][..] = w[..][o][..] * scale[o]`, `b'[o] = b[o] * scale[o] + shift[o]`,
    /// computed in f64.
    ///
    /// # Panics
    ///
    /// If a length does not match the dimensions, or `groups` does not divide
    /// `in_channels` (the caller has checked them).
    #[allow(clippy::too_many_arguments)]
    pub fn from_torch(
        in_channels: usize,
        out_per_group: usize,
        kh: usize,
        kw: usize,
        groups: usize,
        weight: &[f32],
        bias: Option<&[f32]>,
        bn: Option<&Affine>,
    ) -> ConvTransposeParams {
        assert!(
            groups > 0 && in_channels.is_multiple_of(groups),
            "conv transpose: {groups} groups do not divide {in_channels} input channels"
        );
        let out = out_per_group * groups;
        let kk = kh * kw;
        assert_eq!(
            weight.len(),
            in_channels * out_per_group * kk,
            "weight length for [{in_channels}, {out_per_group}, {kh}, {kw}]"
        );
        let mut b = match bias {
            Some(b) => {
                assert_eq!(b.len(), out, "bias length");
                b.to_vec()
            }
            None => vec![0.0; out],
        };
        let mut scale = vec![1.0f64; out];
        if let Some(bn) = bn {
            assert!(
                bn.scale.len() == out && bn.shift.len() == out,
                "batch norm of {} channels after a layer of {out}",
                bn.scale.len()
            );
            for o in 0..out {
                scale[o] = f64::from(bn.scale[o]);
                b[o] = (f64::from(b[o]) * scale[o] + f64::from(bn.shift[o])) as f32;
            }
        }
        let cpg = in_channels / groups;
        let mut w = vec![0.0f32; weight.len()];
        for ci in 0..in_channels {
            let (g, c) = (ci / cpg, ci % cpg);
            for oo in 0..out_per_group {
                let s = scale[g * out_per_group + oo];
                for t in 0..kk {
                    let v = weight[(ci * out_per_group + oo) * kk + t];
                    let v = if bn.is_some() {
                        (f64::from(v) * s) as f32
                    } else {
                        v
                    };
                    w[((g * kk + t) * cpg + c) * out_per_group + oo] = v;
                }
            }
        }
        ConvTransposeParams {
            in_channels,
            out_per_group,
            kh,
            kw,
            groups,
            weight: w.into(),
            bias: b.into(),
        }
    }

    /// Parameters computed at compile time ([`crate::buf::Embed`]): dims
    /// `[in_channels, out_per_group, kh, kw, groups]`, the weight and bias.
    #[doc(hidden)]
    pub const fn from_static(
        dims: [usize; 5],
        weight: &'static [f32],
        bias: &'static [f32],
    ) -> ConvTransposeParams {
        let [in_channels, out_per_group, kh, kw, groups] = dims;
        ConvTransposeParams {
            in_channels,
            out_per_group,
            kh,
            kw,
            groups,
            weight: Buf::Static(weight),
            bias: Buf::Static(bias),
        }
    }
}

/// Largest block of output channels a micro-kernel call accumulates.
const MAX_MR: usize = 8;

/// One phase row of one block of output channels: where it reads and writes.
struct RowArgs<'a> {
    d: &'a Dims2d,
    /// The group's first input channel plane.
    input: &'a [f32],
    /// Weights of the group at the block's first output channel (`[kh][kw][cpg][opg]`).
    w: &'a [f32],
    /// Bias of the block's channels.
    bias: &'a [f32],
    /// The block's first output plane, at output row `y`.
    out: *mut f32,
    /// Phase column, columns of the phase.
    rx: usize,
    nx: usize,
    /// Valid `(iy, ky)` taps of this output row.
    rows: &'a [(usize, usize)],
    /// Valid `(kx, off)` taps of this phase column: input column `tx + off`.
    cols: &'a [(usize, isize)],
    act: Act,
}

/// `MR` output channels of one phase row: `MR` accumulators per vector of phase columns.
///
/// # Safety
///
/// `a.out + r * OH * OW + x` must be writable for `r < MR` and the row's phase columns
/// `x = rx + SW * tx < OW`.
#[inline(always)]
unsafe fn phase_row<S: Simd, const MR: usize>(s: S, a: &RowArgs<'_>) {
    let d = a.d;
    let l = S::LANES;
    let (cpg, opg) = (d.c / d.g, d.o / d.g);
    let (hw, ohw) = (d.h * d.w, d.oh * d.ow);
    let mut tmp = [0.0f32; 16];
    let mut tx0 = 0;
    while tx0 < a.nx {
        let n = l.min(a.nx - tx0);
        let mut acc = [s.zero(); MR];
        for &(iy, ky) in a.rows {
            for &(kx, off) in a.cols {
                // Phase columns tx0..tx0+n read input columns tx0+off.. : the valid ones.
                let start = tx0 as isize + off;
                let lo = (-start).clamp(0, n as isize) as usize;
                let hi = (d.w as isize - start).clamp(0, n as isize) as usize;
                if lo >= hi {
                    continue;
                }
                let wt = &a.w[(ky * d.kw + kx) * cpg * opg..];
                let row = iy * d.w;
                for ci in 0..cpg {
                    let plane = &a.input[ci * hw + row..][..d.w];
                    let v = if lo == 0 && hi == l {
                        // SAFETY: columns start..start+l are inside the row (lo == 0,
                        // hi == l).
                        unsafe { s.load(plane.as_ptr().offset(start)) }
                    } else {
                        tmp = [0.0; 16];
                        let first = (start + lo as isize) as usize;
                        tmp[lo..hi].copy_from_slice(&plane[first..first + hi - lo]);
                        // SAFETY: `tmp` holds 16 >= LANES floats.
                        unsafe { s.load(tmp.as_ptr()) }
                    };
                    let wr = &wt[ci * opg..][..MR];
                    for r in 0..MR {
                        acc[r] = s.mul_add(s.splat(wr[r]), v, acc[r]);
                    }
                }
            }
        }
        for (r, &acc) in acc.iter().enumerate() {
            let v = s.act(s.add(acc, s.splat(a.bias[r])), a.act);
            // SAFETY: the caller guarantees the row's phase columns of plane r are
            // writable; lanes below n are columns rx + SW*(tx0 + i) < OW.
            unsafe {
                let out = a.out.add(r * ohw + a.rx + d.sw * tx0);
                if d.sw == 1 {
                    s.store_n(out, v, n);
                } else {
                    s.store(tmp.as_mut_ptr(), v);
                    for (i, &x) in tmp[..n].iter().enumerate() {
                        *out.add(i * d.sw) = x;
                    }
                }
            }
        }
        tx0 += n;
    }
}

/// The transposed convolution as a kernel for [`simd::run`].
struct CtRun<'a> {
    d: Dims2d,
    input: &'a [f32],
    params: &'a ConvTransposeParams,
    output: &'a mut [f32],
    act: Act,
}

/// Most kernel rows or columns (taps along one axis) a phase can use.
const MAX_K: usize = 64;

impl WithSimd for CtRun<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let d = self.d;
        let p = self.params;
        let (cpg, opg) = (d.c / d.g, d.o / d.g);
        let (hw, ohw) = (d.h * d.w, d.oh * d.ow);
        let out = self.output.as_mut_ptr();
        let mut rows = [(0usize, 0usize); MAX_K];
        let mut cols = [(0usize, 0isize); MAX_K];
        for rx in 0..d.sw.min(d.ow) {
            let nx = (d.ow - rx).div_ceil(d.sw);
            // Taps of this phase column: rx + PW - kx*DW divisible by SW.
            let mut ncols = 0;
            for kx in 0..d.kw {
                let t = (rx + d.pw) as isize - (kx * d.dw) as isize;
                if t.rem_euclid(d.sw as isize) == 0 {
                    cols[ncols] = (kx, t.div_euclid(d.sw as isize));
                    ncols += 1;
                }
            }
            for y in 0..d.oh {
                let mut nrows = 0;
                for ky in 0..d.kh {
                    let t = (y + d.ph) as isize - (ky * d.dh) as isize;
                    if t.rem_euclid(d.sh as isize) == 0 {
                        let iy = t.div_euclid(d.sh as isize);
                        if 0 <= iy && iy < d.h as isize {
                            rows[nrows] = (iy as usize, ky);
                            nrows += 1;
                        }
                    }
                }
                for g in 0..d.g {
                    let input = &self.input[g * cpg * hw..(g + 1) * cpg * hw];
                    let wg = &p.weight[g * d.kh * d.kw * cpg * opg..][..d.kh * d.kw * cpg * opg];
                    let mut o = 0;
                    while o < opg {
                        let mr = (opg - o).min(MAX_MR);
                        let mr = if (4..MAX_MR).contains(&mr) { 4 } else { mr };
                        let oc = g * opg + o;
                        let a = RowArgs {
                            d: &d,
                            input,
                            w: &wg[o..],
                            bias: &p.bias[oc..oc + mr],
                            // SAFETY: output plane oc, row y: inside `output`, which
                            // holds O*OH*OW floats.
                            out: unsafe { out.add(oc * ohw + y * d.ow) },
                            rx,
                            nx,
                            rows: &rows[..nrows],
                            cols: &cols[..ncols],
                            act: self.act,
                        };
                        // SAFETY: planes oc..oc+mr (< O) of output row y, phase
                        // columns below OW: inside `output`.
                        unsafe {
                            match mr {
                                8 => phase_row::<S, 8>(s, &a),
                                4 => phase_row::<S, 4>(s, &a),
                                3 => phase_row::<S, 3>(s, &a),
                                2 => phase_row::<S, 2>(s, &a),
                                _ => phase_row::<S, 1>(s, &a),
                            }
                        }
                        o += mr;
                    }
                }
            }
        }
    }
}

/// The transposed convolution with its dimensions as runtime values, at `level`.
fn conv_transpose_dyn(
    level: Level,
    d: Dims2d,
    input: &[f32],
    params: &ConvTransposeParams,
    output: &mut [f32],
    act: Act,
) {
    assert!(
        d.kh <= MAX_K && d.kw <= MAX_K,
        "conv transpose: kernels up to {MAX_K} per axis"
    );
    let input = &input[..d.c * d.h * d.w];
    let output = &mut output[..d.o * d.oh * d.ow];
    simd::run(
        level,
        CtRun {
            d,
            input,
            params,
            output,
            act,
        },
    );
}

/// Transposed 2-D convolution, PyTorch `ConvTranspose2d` semantics, fused with its
/// activation: `output[o][y][x] = act(bias[o] + sum of input[ci][iy][ix] *
/// w[ci][o % (O/G)][ky][kx])` over the input channels `ci` of `o`'s group and the taps
/// with `y = iy*SH - PH + ky*DH`, `x = ix*SW - PW + kx*DW`.
///
/// `input` holds at least `C*H*W` values and `output` at least `O*OH*OW`. `PH`/`PW` are
/// PyTorch's `padding`; `OH`/`OW` are the output size, `(H-1)*SH - 2*PH + DH*(KH-1) + 1`
/// plus the `output_padding` (any other size is computed by the same rule too).
///
/// # Panics
///
/// If `params` was built for other dimensions, a slice is too short, or a kernel axis has
/// more than 64 taps.
pub fn conv_transpose2d<
    const C: usize,
    const H: usize,
    const W: usize,
    const O: usize,
    const OH: usize,
    const OW: usize,
    const KH: usize,
    const KW: usize,
    const SH: usize,
    const SW: usize,
    const PH: usize,
    const PW: usize,
    const DH: usize,
    const DW: usize,
    const G: usize,
>(
    input: &[f32],
    params: &ConvTransposeParams,
    output: &mut [f32],
    act: Act,
) {
    const {
        assert!(C > 0 && H > 0 && W > 0 && O > 0 && OH > 0 && OW > 0);
        assert!(KH > 0 && KW > 0 && SH > 0 && SW > 0 && DH > 0 && DW > 0);
        assert!(G > 0 && C.is_multiple_of(G) && O.is_multiple_of(G));
    }
    assert!(
        params.in_channels == C
            && params.out_per_group * G == O
            && params.groups == G
            && params.kh == KH
            && params.kw == KW,
        "conv_transpose2d: parameters are [{}, {}, {}, {}] in {} groups, the layer wants \
         [{C}, {}, {KH}, {KW}] in {G}",
        params.in_channels,
        params.out_per_group,
        params.kh,
        params.kw,
        params.groups,
        O / G
    );
    let d = Dims2d {
        c: C,
        h: H,
        w: W,
        o: O,
        oh: OH,
        ow: OW,
        kh: KH,
        kw: KW,
        sh: SH,
        sw: SW,
        ph: PH,
        pw: PW,
        dh: DH,
        dw: DW,
        g: G,
    };
    conv_transpose_dyn(cpu::level(), d, input, params, output, act);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference::{self as r, Rng, ACTS};

    /// One transposed-conv axis: (input, output, kernel, stride, padding, dilation).
    type Ax = (usize, usize, usize, usize, usize, usize);

    /// Axis geometries: sizes 1..5, kernels 1..4 (also smaller than the stride),
    /// strides 1..3, dilations 1..3, padding up to the kernel's extent, every output
    /// padding PyTorch allows (below max(stride, dilation)).
    fn axes() -> Vec<Ax> {
        let mut v = Vec::new();
        for n in [1, 2, 3, 5] {
            for k in [1, 2, 3, 4] {
                for s in [1, 2, 3] {
                    for d in [1, 2, 3] {
                        if k == 1 && d > 1 {
                            continue;
                        }
                        for p in 0..=d * (k - 1) {
                            for op in 0..s.max(d) {
                                let full = (n - 1) * s + d * (k - 1) + 1 + op;
                                if full > 2 * p {
                                    v.push((n, full - 2 * p, k, s, p, d));
                                }
                            }
                        }
                    }
                }
            }
        }
        v
    }

    const CHANNELS: [(usize, usize, usize); 8] = [
        (1, 1, 1),
        (1, 3, 1),
        (3, 2, 1),
        (2, 4, 2),
        (4, 2, 2),
        (3, 3, 3),
        (6, 9, 3),
        (5, 17, 1),
    ];

    fn check(
        rng: &mut Rng,
        (c, o, g): (usize, usize, usize),
        ah: Ax,
        aw: Ax,
        act: Act,
        bias: bool,
    ) {
        let d = Dims2d {
            c,
            h: ah.0,
            w: aw.0,
            o,
            oh: ah.1,
            ow: aw.1,
            kh: ah.2,
            kw: aw.2,
            sh: ah.3,
            sw: aw.3,
            ph: ah.4,
            pw: aw.4,
            dh: ah.5,
            dw: aw.5,
            g,
        };
        let x = rng.vec(c * d.h * d.w, -1.0, 1.0);
        let w = rng.vec(c * (o / g) * d.kh * d.kw, -1.0, 1.0);
        let b = rng.vec(o, -0.5, 0.5);
        let b = bias.then_some(&b[..]);
        let p = ConvTransposeParams::from_torch(c, o / g, d.kh, d.kw, g, &w, b, None);
        let want = r::conv_transpose2d(&d_of(&d), &x, &w, b, act);
        let mut xin = x.clone();
        xin.push(f32::NAN);
        let n = o * d.oh * d.ow;
        for level in simd::test_levels() {
            let mut got = vec![7.0; n + 1];
            conv_transpose_dyn(level, d, &xin, &p, &mut got, act);
            assert_eq!(got[n], 7.0, "wrote past the output: {d:?}");
            r::assert_close(&got[..n], &want, &(d, act, level));
        }
    }

    fn d_of(d: &Dims2d) -> r::CtDims {
        r::CtDims {
            c: d.c,
            o: d.o,
            g: d.g,
            h: (d.h, d.oh, d.kh, d.sh, d.ph, d.dh),
            w: (d.w, d.ow, d.kw, d.sw, d.pw, d.dw),
        }
    }

    /// Every axis geometry on each axis, paired with a random one on the other, random
    /// channels/groups and activation.
    #[test]
    fn sweep_axes_against_reference() {
        let axes = axes();
        assert!(axes.len() > 300, "{}", axes.len());
        let mut rng = Rng::new(101);
        for (i, &a) in axes.iter().enumerate() {
            let b = axes[rng.below(axes.len())];
            for (ah, aw) in [(a, b), (b, a)] {
                let ch = CHANNELS[(i + rng.below(3)) % CHANNELS.len()];
                let act = ACTS[rng.below(ACTS.len())];
                let bias = rng.below(4) != 0;
                check(&mut rng, ch, ah, aw, act, bias);
            }
        }
    }

    /// 1-D (H = 1) signals with long rows, the decoder shapes of a TCN / upsampling net.
    #[test]
    fn one_d_against_reference() {
        let mut rng = Rng::new(102);
        let one = (1, 1, 1, 1, 0, 1);
        for (w, k, s, p, d, op) in [
            (784, 3, 1, 1, 1, 0),
            (392, 4, 2, 1, 1, 0),
            (261, 3, 3, 0, 1, 2),
            (100, 5, 2, 2, 4, 1),
            (50, 2, 4, 0, 1, 3),
        ] {
            let ow = (w - 1) * s + d * (k - 1) + 1 + op - 2 * p;
            for ch in [(4, 6, 1), (6, 4, 2), (16, 16, 1), (3, 3, 3)] {
                check(&mut rng, ch, one, (w, ow, k, s, p, d), Act::RELU, true);
            }
        }
    }

    #[test]
    fn const_generic_instance_and_folded_bn() {
        let mut rng = Rng::new(103);
        const C: usize = 4;
        const O: usize = 6;
        let x = rng.vec(C * 3 * 5, -1.0, 1.0);
        let w = rng.vec(C * O * 9, -1.0, 1.0);
        let b = rng.vec(O, -0.5, 0.5);
        let bn = Affine {
            scale: rng.vec(O, 0.5, 1.5).into(),
            shift: rng.vec(O, -0.5, 0.5).into(),
        };
        let plain = ConvTransposeParams::from_torch(C, O, 3, 3, 1, &w, Some(&b), None);
        let folded = ConvTransposeParams::from_torch(C, O, 3, 3, 1, &w, Some(&b), Some(&bn));
        // 3x5 -> stride 2, padding 1, output padding 1: 6x10.
        let mut want = [0.0; O * 60];
        conv_transpose2d::<C, 3, 5, O, 6, 10, 3, 3, 2, 2, 1, 1, 1, 1, 1>(
            &x,
            &plain,
            &mut want,
            Act::IDENTITY,
        );
        crate::kernels::norm::channel_affine::<O, 60>(&mut want, &bn, Act::GELU);
        let mut got = [0.0; O * 60];
        conv_transpose2d::<C, 3, 5, O, 6, 10, 3, 3, 2, 2, 1, 1, 1, 1, 1>(
            &x,
            &folded,
            &mut got,
            Act::GELU,
        );
        let want: Vec<f64> = want.iter().map(|&v| f64::from(v)).collect();
        r::assert_close(&got, &want, &"folded bn");
    }
}
