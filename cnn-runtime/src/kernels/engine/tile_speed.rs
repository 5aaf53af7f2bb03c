//! Speed of the micro-kernels alone, on data that stays in cache (`cargo test -p
//! cnn-runtime --release tile_speed -- --ignored --nocapture`): GFLOP/s of the chunked
//! 4 x 6 and 2 x 12 channel tiles ([`CkTile`]), the two-panel channel tiles of 10 and 8
//! pixels ([`CvTile2`]) and the wide pixel tiles (6 channels by 4 vectors, 8 by 3:
//! [`PvTile`]) over reductions of 64, 128 and 256 input channels of one tap, the input
//! channels `TILE_PLANE` floats apart (default 64). What a layer loses beyond these
//! numbers is memory: compare with `conv::speed`. Intel Xeon (AVX-512, 2026-12-05),
//! GFLOP/s at 64 / 256 channels: packed (64 apart) 4x6 208-216 / 191-200, 2x12 200-206 /
//! 190-205, 2x10 170-188 / 184-195, pixels 6x4 177-198 / 183-197, 8x3 201 / 206, 2x8
//! 165-172 / 170-182; 3136 apart (a 56x56 plane) 4x6 190-202 / 167-173, 2x12 189-197 /
//! 149-154, 2x10 156-170 / 135-139, 6x4 173-180 / 126-130, 8x3 197 / 152, 2x8 156-158 /
//! 146-157.

use super::*;
use crate::kernels::reference::best_time_us;
use crate::kernels::simd::run;
use std::hint::black_box;

/// One tile kind run `reps` times over `cn` input channels of one tap.
struct Bench {
    kind: usize,
    plane: usize,
    cn: usize,
    reps: usize,
    w: *const f32,
    x: *const f32,
    acc: *mut f32,
    out: *mut f32,
    bias: *const f32,
}

impl WithSimd for Bench {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let taps = [0isize];
        let job = Job {
            taps: &taps,
            cn: self.cn,
            plane: self.plane,
            wtap: PANEL * self.cn,
            first: true,
            last: true,
            act: Act::IDENTITY,
            post: Act::IDENTITY,
            res: core::ptr::null(),
        };
        let pstride = self.cn * PANEL;
        let px6: [isize; 6] = core::array::from_fn(|p| p as isize);
        let px8: [isize; 8] = core::array::from_fn(|p| p as isize);
        let px10: [isize; 10] = core::array::from_fn(|p| p as isize);
        let px12: [isize; 12] = core::array::from_fn(|p| p as isize);
        let (w, src, bias, out, acc) = (self.w, self.x, self.bias, self.out, self.acc);
        // The pixel tiles' arguments (both kinds: 4 and 5).
        let pv = PvArgs {
            job: &job,
            w,
            src,
            vsrc: 16,
            out,
            vout: 16,
            ostride: 64,
            bias,
            n: 16,
            pf: PrefetchStream::NONE,
        };
        // A two-panel channel tile of `NP` pixels (kinds 2 and 3; a macro: a closure would
        // not inherit the level's target features).
        macro_rules! cv2 {
            ($px:expr, $np:literal) => {{
                let a = CvArgs {
                    job: &job,
                    w,
                    src,
                    px: $px,
                    bias,
                    out,
                    ostride: 16,
                    lanes: (0, 16),
                    np: $np,
                    pf: PrefetchStream::NONE,
                };
                s.vectorize(CvTile2::<$np, true>::new(a, pstride));
            }};
        }
        for _ in 0..self.reps {
            // SAFETY: the weights hold 4 panels of `cn` rows (`pstride` apart), the
            // pixels `cn` planes of 64 floats, the sums 64 vectors, the output 32
            // planes of 16 floats (`ostride`), the bias 64 floats (`tiles`).
            unsafe {
                match self.kind {
                    0 => {
                        let px = &px6;
                        let a = CkArgs {
                            job: &job,
                            w,
                            pstride,
                            src,
                            px,
                            np: 6,
                            acc,
                            pf: w,
                        };
                        s.vectorize(CkTile::<4, 6, true, true, PF_NONE>::new(a));
                    }
                    1 => {
                        let px = &px12;
                        let a = CkArgs {
                            job: &job,
                            w,
                            pstride,
                            src,
                            px,
                            np: 12,
                            acc,
                            pf: w,
                        };
                        s.vectorize(CkTile::<2, 12, true, true, PF_NONE>::new(a));
                    }
                    2 => cv2!(&px10, 10),
                    4 => pv4_call::<S, FULL>(s, 6, pv),
                    5 => pv3_call(s, 8, pv),
                    _ => cv2!(&px8, 8),
                }
            }
        }
    }
}

#[test]
#[ignore]
fn tiles() {
    let level = crate::cpu::level();
    eprintln!("level {level:?}");
    if PANEL != 16 || level != crate::cpu::Level::Avx512 {
        eprintln!("note: the chunked and two-panel tiles need AVX-512: NOT timed");
        return;
    }
    for cn in [64usize, 128, 256] {
        let w = vec![Row16([0.01; PANEL]); 4 * cn];
        // Channels `plane` floats apart (`TILE_PLANE`, default 64: packed).
        let plane: usize = std::env::var("TILE_PLANE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64);
        let x = vec![0.5f32; cn * plane + 64];
        let mut acc = vec![Row16([0.0; PANEL]); 64];
        let mut out = vec![0.0f32; 32 * 64];
        let bias = vec![0.0f32; 64];
        let reps = 2000;
        let mut line = format!("{cn} channels:");
        for (kind, name, macs) in [
            (0, "4x6", 64 * 6),
            (1, "2x12", 32 * 12),
            (2, "2x10", 32 * 10),
            (4, "px 6x4", 6 * 64),
            (5, "px 8x3", 8 * 48),
            (3, "2x8", 32 * 8),
        ] {
            let t = best_time_us(|| {
                let b = Bench {
                    kind,
                    plane,
                    cn,
                    reps,
                    w: w.as_ptr().cast(),
                    x: x.as_ptr(),
                    acc: acc.as_mut_ptr().cast(),
                    out: out.as_mut_ptr(),
                    bias: bias.as_ptr(),
                };
                run(level, b);
                black_box((&acc, &out));
            });
            let gflops = (2 * macs * cn * reps) as f64 / t / 1e3;
            line += &format!("  {name} {gflops:.0} GFLOP/s");
        }
        eprintln!("{line}");
    }
}
