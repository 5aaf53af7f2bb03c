//! Channel shuffle (ShuffleNet): a permutation of whole planes, PyTorch's
//! `nn.ChannelShuffle(groups)`.
//!
//! Seen as `[G, C / G]` channels, the input is transposed to `[C / G, G]`: output channel
//! `j * G + i` is input channel `i * (C / G) + j`. Each plane is one contiguous copy.

/// The input channel that output channel `o` of a shuffle of `channels` in `groups`
/// groups reads.
#[inline]
pub(crate) fn source_channel(o: usize, channels: usize, groups: usize) -> usize {
    let per = channels / groups;
    (o % groups) * per + o / groups
}

/// Channel shuffle of `c` planes of `plane` values in `groups` groups (`groups` divides
/// `c`), the input the concatenation of `parts` (whole planes, `c` in all), output planes
/// `first..` of `output` (the whole output when `first == 0`).
fn shuffle_planes(
    (c, plane, groups): (usize, usize, usize),
    parts: &[&[f32]],
    first: usize,
    output: &mut [f32],
) {
    for (k, out) in output.chunks_exact_mut(plane).enumerate() {
        out.copy_from_slice(source_plane(parts, first + k, (c, plane, groups)));
    }
}

/// The input plane output channel `o` reads, in the part that holds it.
fn source_plane<'a>(
    parts: &[&'a [f32]],
    o: usize,
    (c, plane, groups): (usize, usize, usize),
) -> &'a [f32] {
    let mut at = source_channel(o, c, groups) * plane;
    for x in parts {
        if at < x.len() {
            return &x[at..at + plane];
        }
        at -= x.len();
    }
    unreachable!("the parts hold every channel")
}

/// Channel shuffle, PyTorch `nn.ChannelShuffle(G)` on a `[C, H, W]` tensor of `P = H * W`
/// values a plane (a 1-D signal `[C, L]`: `P = L`): output channel `j * G + i` is input
/// channel `i * (C / G) + j`. With the `parallel` feature, from 32K floats, in runs of
/// whole planes over the pool's threads.
///
/// `input` holds at least `C * P` values and `output` at least `C * P`.
///
/// # Panics
///
/// If a slice is too short.
pub fn channel_shuffle<const C: usize, const P: usize, const G: usize>(
    input: &[f32],
    output: &mut [f32],
) {
    const { assert!(C > 0 && P > 0 && G > 0 && C.is_multiple_of(G)) }
    shuffle_dyn((C, P, G), input, output);
}

/// [`channel_shuffle`] with run-time dimensions.
fn shuffle_dyn((c, p, g): (usize, usize, usize), input: &[f32], output: &mut [f32]) {
    concat_shuffle_dyn((c, p, g), &[&input[..c * p]], output);
}

/// Channel shuffle of the concatenation of `parts` (along channels: `C` planes of `P`
/// values in all, in order), read where the parts are: PyTorch's
/// `nn.ChannelShuffle(G)(torch.cat(parts, 1))` without the concatenated copy
/// (ShuffleNet's units end so). With the `parallel` feature, from 32K floats, in runs of
/// whole planes over the pool's threads.
///
/// `output` holds at least `C * P` values.
///
/// # Panics
///
/// If the parts do not hold `C * P` values in all, in whole planes, or `output` is too
/// short.
pub fn concat_channel_shuffle<const C: usize, const P: usize, const G: usize>(
    parts: &[&[f32]],
    output: &mut [f32],
) {
    const { assert!(C > 0 && P > 0 && G > 0 && C.is_multiple_of(G)) }
    concat_shuffle_dyn((C, P, G), parts, output);
}

/// [`concat_channel_shuffle`] with run-time dimensions.
fn concat_shuffle_dyn((c, p, g): (usize, usize, usize), parts: &[&[f32]], output: &mut [f32]) {
    check_parts(parts, c, p);
    let output = &mut output[..c * p];
    #[cfg(feature = "parallel")]
    {
        let threads = crate::pool::num_threads();
        if threads > 1 && c > 1 && c * p >= super::PLANES_PAR_FLOATS {
            let per = c.div_ceil(threads);
            crate::pool::run_chunks_mut(output, per * p, &|i, out| {
                shuffle_planes((c, p, g), parts, i * per, out);
            });
            return;
        }
    }
    shuffle_planes((c, p, g), parts, 0, output);
}

/// A team member's part of [`channel_shuffle`] on a `[C, H, W]` tensor (`plan::team`):
/// rows `rows.0..rows.1` of every output plane, from the same rows of its input plane
/// (a shuffle moves whole planes, so a member needs only its own rows). The other rows
/// of `output` are left as they are.
///
/// # Panics
///
/// If a slice is too short.
pub fn channel_shuffle_rows<const C: usize, const H: usize, const W: usize, const G: usize>(
    input: &[f32],
    output: &mut [f32],
    rows: (usize, usize),
) {
    const { assert!(C > 0 && H > 0 && W > 0 && G > 0 && C.is_multiple_of(G)) }
    shuffle_rows_dyn((C, H, W, G), &[&input[..C * H * W]], output, rows);
}

/// A team member's part of [`concat_channel_shuffle`] on `[C, H, W]` parts: rows
/// `rows.0..rows.1` of every output plane (see [`channel_shuffle_rows`]).
///
/// # Panics
///
/// If the parts do not hold `C * H * W` values in all, in whole planes, or `output` is
/// too short.
pub fn concat_channel_shuffle_rows<
    const C: usize,
    const H: usize,
    const W: usize,
    const G: usize,
>(
    parts: &[&[f32]],
    output: &mut [f32],
    rows: (usize, usize),
) {
    const { assert!(C > 0 && H > 0 && W > 0 && G > 0 && C.is_multiple_of(G)) }
    shuffle_rows_dyn((C, H, W, G), parts, output, rows);
}

/// Panics unless `parts` hold `c` planes of `p` values in all, in whole planes.
fn check_parts(parts: &[&[f32]], c: usize, p: usize) {
    assert!(
        parts.iter().all(|x| x.len().is_multiple_of(p))
            && parts.iter().map(|x| x.len()).sum::<usize>() == c * p,
        "cnn: channel shuffle of parts that are not {c} planes of {p} values"
    );
}

/// Rows `rows.0..rows.1` of every plane of the shuffle of the concatenation of `parts`.
fn shuffle_rows_dyn(
    (c, h, w, g): (usize, usize, usize, usize),
    parts: &[&[f32]],
    output: &mut [f32],
    rows: (usize, usize),
) {
    let p = h * w;
    check_parts(parts, c, p);
    let (a, b) = super::row_span(rows, h, w);
    if a == b {
        return;
    }
    for (o, out) in output[..c * p].chunks_exact_mut(p).enumerate() {
        out[a..b].copy_from_slice(&source_plane(parts, o, (c, p, g))[a..b]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference::Rng;

    /// PyTorch's definition, index by index: `x.view(G, C/G, P).transpose(0, 1)`.
    fn reference(x: &[f32], c: usize, p: usize, g: usize) -> Vec<f32> {
        let per = c / g;
        let mut y = vec![0.0; c * p];
        for i in 0..g {
            for j in 0..per {
                for k in 0..p {
                    y[(j * g + i) * p + k] = x[(i * per + j) * p + k];
                }
            }
        }
        y
    }

    #[test]
    fn matches_the_definition() {
        let mut rng = Rng::new(7);
        for &(c, p, g) in &[
            (1, 1, 1),
            (4, 1, 2),
            (6, 5, 3),
            (12, 7, 4),
            (116, 49, 2),
            (58, 600, 2),
            (64, 1024, 8),
            (9, 3, 9),
        ] {
            let x = rng.vec(c * p, -3.0, 3.0);
            let mut y = vec![f32::NAN; c * p + 3];
            shuffle_dyn((c, p, g), &x, &mut y);
            assert_eq!(y[..c * p], reference(&x, c, p, g)[..], "c={c} p={p} g={g}");
            assert!(
                y[c * p..].iter().all(|v| v.is_nan()),
                "wrote past the output"
            );
        }
    }

    #[test]
    fn one_group_is_a_copy_and_the_generic_form_agrees() {
        let mut rng = Rng::new(8);
        let x = rng.vec(6 * 10, -1.0, 1.0);
        let mut y = vec![0.0; 60];
        channel_shuffle::<6, 10, 1>(&x, &mut y);
        assert_eq!(x, y);
        channel_shuffle::<6, 10, 3>(&x, &mut y);
        assert_eq!(y, reference(&x, 6, 10, 3));
    }

    /// The shuffle of a concatenation read from its parts (of unequal sizes, a part of
    /// one plane, up to four parts) is the shuffle of the concatenated copy.
    #[test]
    fn parts_match_the_concatenated_copy() {
        let mut rng = Rng::new(9);
        for &(sizes, p, g) in &[
            (&[4usize, 4][..], 9, 2),
            (&[58, 58][..], 784, 2),
            (&[3, 1, 2][..], 5, 3),
            (&[1, 5, 2, 4][..], 7, 4),
            (&[96, 32][..], 400, 8),
        ] {
            let c: usize = sizes.iter().sum();
            let parts: Vec<Vec<f32>> = sizes.iter().map(|n| rng.vec(n * p, -2.0, 2.0)).collect();
            let cat: Vec<f32> = parts.concat();
            let refs: Vec<&[f32]> = parts.iter().map(|x| &x[..]).collect();
            let mut y = vec![f32::NAN; c * p + 1];
            concat_shuffle_dyn((c, p, g), &refs, &mut y);
            assert_eq!(
                y[..c * p],
                reference(&cat, c, p, g)[..],
                "{sizes:?} p={p} g={g}"
            );
            assert!(y[c * p].is_nan(), "wrote past the output");
        }
    }

    /// Two members' rows (any split, an empty one included) make the whole shuffle, and
    /// a member writes nothing outside its rows.
    #[test]
    fn rows_make_the_whole_shuffle() {
        let mut rng = Rng::new(10);
        for &(sizes, h, w, g) in &[
            (&[4usize, 4][..], 3, 3, 2),
            (&[58, 58][..], 7, 7, 2),
            (&[3, 1, 2][..], 5, 2, 3),
            (&[6][..], 4, 5, 2),
        ] {
            let c: usize = sizes.iter().sum();
            let p = h * w;
            let parts: Vec<Vec<f32>> = sizes.iter().map(|n| rng.vec(n * p, -2.0, 2.0)).collect();
            let want = reference(&parts.concat(), c, p, g);
            let refs: Vec<&[f32]> = parts.iter().map(|x| &x[..]).collect();
            for mid in 0..=h {
                let mut y = vec![f32::NAN; c * p + 1];
                concat_shuffle_rows_both(&refs, (c, h, w, g), mid, &mut y);
                assert_eq!(y[..c * p], want[..], "{sizes:?} h={h} mid={mid}");
                assert!(y[c * p].is_nan(), "wrote past the output");
                // Member 0 alone: rows after `mid` untouched.
                let mut y = vec![f32::NAN; c * p];
                shuffle_rows_dyn((c, h, w, g), &refs, &mut y, (0, mid));
                for (k, v) in y.iter().enumerate() {
                    assert_eq!(v.is_nan(), k % p >= mid * w, "{sizes:?} mid={mid} at {k}");
                }
            }
        }
        let x: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let (mut a, mut b) = (vec![0.0; 24], vec![0.0; 24]);
        channel_shuffle::<6, 4, 3>(&x, &mut a);
        channel_shuffle_rows::<6, 2, 2, 3>(&x, &mut b, (0, 1));
        channel_shuffle_rows::<6, 2, 2, 3>(&x, &mut b, (1, 2));
        assert_eq!(a, b);
    }

    fn concat_shuffle_rows_both(
        parts: &[&[f32]],
        (c, h, w, g): (usize, usize, usize, usize),
        mid: usize,
        y: &mut [f32],
    ) {
        shuffle_rows_dyn((c, h, w, g), parts, y, (0, mid));
        shuffle_rows_dyn((c, h, w, g), parts, y, (mid, h));
    }

    #[test]
    #[should_panic(expected = "not 6 planes of 4 values")]
    fn parts_of_the_wrong_size_panic() {
        let (a, b) = (vec![0.0; 8], vec![0.0; 12]);
        let mut y = vec![0.0; 24];
        concat_shuffle_dyn((6, 4, 2), &[&a, &b[..11]], &mut y);
    }

    #[test]
    fn source_channel_inverts_the_transpose() {
        // ShuffleNet's two groups interleave the halves: 0, C/2, 1, C/2 + 1, ...
        let order: Vec<usize> = (0..6).map(|o| source_channel(o, 6, 2)).collect();
        assert_eq!(order, [0, 3, 1, 4, 2, 5]);
    }
}
