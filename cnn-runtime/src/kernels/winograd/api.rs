//! The Winograd convolution's entry points: the public const-generic kernels the
//! generated code calls, their scratch size, and the runtime-dimension forms the
//! engine's dispatch and the tests use.

#[allow(unused_imports)]
use super::*;

/// The convolution with its dimensions as runtime values, at `level`; see
/// [`winograd_conv3x3`].
pub(crate) fn winograd_dyn(
    level: Level,
    d: WgDims,
    input: &[f32],
    params: &WinogradParams,
    output: &mut [f32],
    scratch: Option<&mut [f32]>,
    act: Act,
) {
    winograd_res(level, d, input, params, output, scratch, act, None, None);
}

/// [`winograd_dyn`] with a residual added before the activation (as long as the
/// output): by the output transform (dilation 1), or over the whole output after the
/// polyphase components (the same bits). With `rows` (dilation 1), only the tile rows
/// that cover those output rows (of the pooled output with [`WgDims::pool`]), on this
/// thread: rows beside the band in its first and last tile rows are written too.
#[allow(clippy::too_many_arguments)]
pub(crate) fn winograd_res(
    level: Level,
    d: WgDims,
    input: &[f32],
    params: &WinogradParams,
    output: &mut [f32],
    scratch: Option<&mut [f32]>,
    act: Act,
    res: Option<&[f32]>,
    rows: Option<(usize, usize)>,
) {
    assert!(
        !d.pool || res.is_none(),
        "winograd_conv3x3: a residual with a fused max pool"
    );
    assert!(
        params.out == d.o && params.in_channels == d.c,
        "winograd_conv3x3: parameters are [{}, {}, 3, 3], the layer wants [{}, {}, 3, 3]",
        params.out,
        params.in_channels,
        d.o,
        d.c
    );
    assert!(d.dh >= 1 && d.dw >= 1, "winograd_conv3x3: dilation 0");
    assert!(
        !d.pool || (d.dh == 1 && d.dw == 1),
        "winograd_conv3x3: a fused max pool needs dilation 1"
    );
    // The tile the weights were transformed for.
    let d = WgDims {
        m: params.tile,
        ..d
    };
    let need = scratch_len(&d);
    let input = &input[..d.c * d.h * d.w];
    let output = &mut output[..d.out_len()];
    // The caller's scratch (a region of the model's arena) when it is large enough,
    // else (with `std`) this thread's buffer.
    #[cfg(feature = "std")]
    let mut guard = None;
    let scratch = match scratch {
        Some(buf) if buf.len() >= need => buf,
        #[cfg(feature = "std")]
        _ => guard
            .insert(crate::scratch::Scratch::take_kernel(need))
            .as_mut_slice(),
        #[cfg(not(feature = "std"))]
        _ => panic!(
            "winograd_conv3x3: needs {} floats of scratch (the compiler plans them)",
            need
        ),
    };
    if d.dh == 1 && d.dw == 1 {
        // The convolution's rows (before a fused pool), then the tile rows covering them.
        let tiles = rows.map(|(a, b)| {
            let (a, b) = if d.pool {
                let b = if b >= d.oh / 2 { d.oh } else { 2 * b };
                (2 * a, b)
            } else {
                (a, b)
            };
            (a / d.m, b.min(d.oh).div_ceil(d.m))
        });
        plain(level, d, input, params, output, scratch, act, res, tiles);
    } else if let Some(r) = res {
        polyphase(level, d, input, params, output, scratch, Act::IDENTITY);
        let r = &r[..output.len()];
        let add = crate::kernels::binary::AddAssignRow { x: output, r, act };
        simd::run(level, add);
    } else {
        polyphase(level, d, input, params, output, scratch, act);
    }
}

/// Floats of scratch memory [`winograd_conv3x3`] needs for these dimensions, dilation
/// `(dh, dw)` and output tile side `tile` (2 or 4, as the weights were transformed by
/// [`WinogradParams::with_tile`]) (including the slack to start on a 64-byte boundary;
/// with a dilation above 1, also the buffers of the polyphase split); the compiler
/// reserves them in the arena.
#[allow(clippy::too_many_arguments)]
pub fn winograd_scratch_len(
    tile: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    oh: usize,
    ow: usize,
    dh: usize,
    dw: usize,
) -> usize {
    // The padding changes which input rows a phase reads, not the buffer sizes.
    let d = WgDims {
        c,
        h,
        w,
        o,
        oh,
        ow,
        ph: 0,
        pw: 0,
        dh: dh.max(1),
        dw: dw.max(1),
        m: if tile == 2 { 2 } else { M },
        pool: false,
    };
    scratch_len(&d)
}

/// 3x3 convolution, stride 1, groups 1, by Winograd F(4x4, 3x3), fused with
/// its bias (and folded batch norm) and activation. Same semantics and argument order as
/// [`conv2d`](crate::kernels::conv::conv2d) with `KH = KW = 3`, `SH = SW = 1`, `G = 1`:
/// `output[o][y][x] = act(bias[o] + sum over c, ky, kx of
/// w[o][c][ky][kx] * input[c][y + ky*DH - PH][x + kx*DW - PW])`, taps outside the input
/// reading zero; `PH`/`PW` are the top/left padding, the bottom/right padding is whatever
/// `OH`/`OW` imply.
///
/// A dilation `DH`, `DW` above 1 runs as a dilation-1 convolution of a mosaic of the
/// input's polyphase components. `scratch` is working memory of at least
/// [`winograd_scratch_len`] floats (a shorter one makes the kernel use a per-thread
/// buffer instead, allocated on the thread's first call).
///
/// # Panics
///
/// If `params` was built for other channel counts, or a slice is too short.
pub fn winograd_conv3x3<
    const C: usize,
    const H: usize,
    const W: usize,
    const O: usize,
    const OH: usize,
    const OW: usize,
    const PH: usize,
    const PW: usize,
    const DH: usize,
    const DW: usize,
>(
    input: &[f32],
    params: &WinogradParams,
    output: &mut [f32],
    scratch: &mut [f32],
    act: Act,
) {
    let d = const_dims::<C, H, W, O, OH, OW, PH, PW, DH, DW>(params.tile);
    winograd_dyn(cpu::level(), d, input, params, output, Some(scratch), act);
}

/// [`winograd_conv3x3`] on output rows `rows.0..rows.1` (of every output plane), on this
/// thread: the rows one member of a [`team`](crate::team) owns. Computes whole tiles:
/// the tile rows that cover the band (so, when the band does not start and end on a
/// multiple of the tile side, rows beside it too); every value written is the one
/// [`winograd_conv3x3`] gives. A dilated layer computes all its rows.
///
/// # Panics
///
/// As [`winograd_conv3x3`].
pub fn winograd_conv3x3_rows<
    const C: usize,
    const H: usize,
    const W: usize,
    const O: usize,
    const OH: usize,
    const OW: usize,
    const PH: usize,
    const PW: usize,
    const DH: usize,
    const DW: usize,
>(
    input: &[f32],
    params: &WinogradParams,
    output: &mut [f32],
    scratch: &mut [f32],
    act: Act,
    rows: (usize, usize),
) {
    let d = const_dims::<C, H, W, O, OH, OW, PH, PW, DH, DW>(params.tile);
    let (level, scratch) = (cpu::level(), Some(scratch));
    winograd_res(
        level,
        d,
        input,
        params,
        output,
        scratch,
        act,
        None,
        Some(rows),
    );
}

/// [`winograd_conv3x3`] with a residual added before the activation (a fused `add`, as
/// ResNet's basic blocks end): `output = act(conv(input) + residual)`, `residual` laid
/// out as the output (`O*OH*OW` values). The output transform adds it to each tile's
/// pixels before storing them; the values are the bits of the convolution stored and
/// then added by [`binary_into`](crate::kernels::binary::binary_into).
///
/// # Panics
///
/// As [`winograd_conv3x3`], or if `residual` holds fewer than `O*OH*OW` values.
pub fn winograd_conv3x3_residual<
    const C: usize,
    const H: usize,
    const W: usize,
    const O: usize,
    const OH: usize,
    const OW: usize,
    const PH: usize,
    const PW: usize,
    const DH: usize,
    const DW: usize,
>(
    input: &[f32],
    params: &WinogradParams,
    residual: &[f32],
    output: &mut [f32],
    scratch: &mut [f32],
    act: Act,
) {
    super::super::conv::check_residual("winograd_conv3x3_residual", residual, O * OH * OW);
    let d = const_dims::<C, H, W, O, OH, OW, PH, PW, DH, DW>(params.tile);
    let (level, scratch) = (cpu::level(), Some(scratch));
    winograd_res(
        level,
        d,
        input,
        params,
        output,
        scratch,
        act,
        Some(residual),
        None,
    );
}

/// [`winograd_conv3x3_residual`] on output rows `rows.0..rows.1` (of every output
/// plane), on this thread: the rows one member of a [`team`](crate::team) owns, as
/// [`winograd_conv3x3_rows`] computes them (whole tile rows: the rows beside the band in
/// its first and last tile rows too, from the residual's rows there); every value of
/// the band is the one [`winograd_conv3x3_residual`] gives.
///
/// # Panics
///
/// As [`winograd_conv3x3_residual`].
pub fn winograd_conv3x3_residual_rows<
    const C: usize,
    const H: usize,
    const W: usize,
    const O: usize,
    const OH: usize,
    const OW: usize,
    const PH: usize,
    const PW: usize,
    const DH: usize,
    const DW: usize,
>(
    input: &[f32],
    params: &WinogradParams,
    residual: &[f32],
    output: &mut [f32],
    scratch: &mut [f32],
    act: Act,
    rows: (usize, usize),
) {
    super::super::conv::check_residual("winograd_conv3x3_residual", residual, O * OH * OW);
    let d = const_dims::<C, H, W, O, OH, OW, PH, PW, DH, DW>(params.tile);
    let (level, scratch) = (cpu::level(), Some(scratch));
    let (res, rows) = (Some(residual), Some(rows));
    winograd_res(level, d, input, params, output, scratch, act, res, rows);
}

/// The dimensions the const parameters of [`winograd_conv3x3`] describe (checked at
/// compile time), for weights transformed for output tiles of side `tile`.
const fn const_dims<
    const C: usize,
    const H: usize,
    const W: usize,
    const O: usize,
    const OH: usize,
    const OW: usize,
    const PH: usize,
    const PW: usize,
    const DH: usize,
    const DW: usize,
>(
    tile: usize,
) -> WgDims {
    const {
        assert!(C > 0 && H > 0 && W > 0 && O > 0 && OH > 0 && OW > 0);
        assert!(DH > 0 && DW > 0);
    }
    WgDims {
        c: C,
        h: H,
        w: W,
        o: O,
        oh: OH,
        ow: OW,
        ph: PH,
        pw: PW,
        dh: DH,
        dw: DW,
        m: tile,
        pool: false,
    }
}

/// [`winograd_conv3x3`] (dilation 1) followed by a 2x2 max pool of stride 2 without
/// padding (PyTorch's `max_pool2d(y, 2)`, floor mode: an odd last row or column of the
/// convolution's output is dropped), in one pass: each 4x4 (F(2x2): 2x2) output tile is
/// pooled in registers after its bias and activation, and only the pooled values are
/// stored, into `output` (`O x OH / 2 x OW / 2`); the convolution's own output is never
/// written. The values are those of the convolution and the pool run one after the
/// other (the maximum is exact; a NaN in a window gives NaN). `scratch` as for
/// [`winograd_conv3x3`] (the same length).
///
/// # Panics
///
/// If `params` was built for other channel counts, or a slice is too short.
pub fn winograd_conv3x3_maxpool2<
    const C: usize,
    const H: usize,
    const W: usize,
    const O: usize,
    const OH: usize,
    const OW: usize,
    const PH: usize,
    const PW: usize,
>(
    input: &[f32],
    params: &WinogradParams,
    output: &mut [f32],
    scratch: &mut [f32],
    act: Act,
) {
    let d = pooled_dims::<C, H, W, O, OH, OW, PH, PW>(params.tile);
    winograd_dyn(cpu::level(), d, input, params, output, Some(scratch), act);
}

/// [`winograd_conv3x3_maxpool2`] on pooled output rows `rows.0..rows.1` (of every output
/// plane), on this thread: the rows one member of a [`team`](crate::team) owns. Computes
/// the tile rows that cover the convolution's rows under the band (so, off a tile
/// boundary, pooled rows beside it too); every value written is the one
/// [`winograd_conv3x3_maxpool2`] gives.
///
/// # Panics
///
/// As [`winograd_conv3x3_maxpool2`].
pub fn winograd_conv3x3_maxpool2_rows<
    const C: usize,
    const H: usize,
    const W: usize,
    const O: usize,
    const OH: usize,
    const OW: usize,
    const PH: usize,
    const PW: usize,
>(
    input: &[f32],
    params: &WinogradParams,
    output: &mut [f32],
    scratch: &mut [f32],
    act: Act,
    rows: (usize, usize),
) {
    let d = pooled_dims::<C, H, W, O, OH, OW, PH, PW>(params.tile);
    let (level, scratch) = (cpu::level(), Some(scratch));
    winograd_res(
        level,
        d,
        input,
        params,
        output,
        scratch,
        act,
        None,
        Some(rows),
    );
}

/// The dimensions the const parameters of [`winograd_conv3x3_maxpool2`] describe (checked
/// at compile time), with the fused pool, for output tiles of `tile`.
const fn pooled_dims<
    const C: usize,
    const H: usize,
    const W: usize,
    const O: usize,
    const OH: usize,
    const OW: usize,
    const PH: usize,
    const PW: usize,
>(
    tile: usize,
) -> WgDims {
    const {
        assert!(C > 0 && H > 0 && W > 0 && O > 0 && OH > 1 && OW > 1);
    }
    WgDims {
        pool: true,
        ..const_dims::<C, H, W, O, OH, OW, PH, PW, 1, 1>(tile)
    }
}
