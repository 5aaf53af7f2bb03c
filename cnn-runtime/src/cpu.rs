//! Run-time CPU feature detection and the dispatch of a compiled network to the best
//! instruction set the machine has.
//!
//! Each kernel selects its code at run time from [`level`]: the kernels are written once
//! over a small SIMD trait and instantiated per instruction set (`kernels/simd/`: one file
//! per level), the instance for the current level called through a function compiled
//! with its `#[target_feature]`s. Independently, [`dispatch`] runs a generated model's
//! `forward_body` (an `#[inline(always)]` straight line of kernel calls) either directly
//! or inlined into a function compiled for AVX2 + FMA or AVX-512, so that the glue
//! between kernels is compiled for the same level.
//!
//! Detection runs once and is cached. The environment variable `CNN_SIMD` (read at first
//! use: `portable`, `avx2` or `avx512`) or [`set_level`] caps the level; every level gives
//! the same results within the conformance tolerance.
//!
//! While a forward pass runs (and on the thread pool's workers), subnormal floats are
//! flushed to zero ([`FlushSubnormals`]), as TensorFlow's executors and OpenVINO's
//! denormals optimisation do: on Intel cores every operation that meets a subnormal
//! otherwise takes a microcode assist of ~100+ cycles.
//!
//! Without `std` there is no run-time detection: the level is what the target was
//! compiled for (`-C target-feature=+avx2,+fma` or `-C target-cpu=...`), and `CNN_SIMD`
//! is not read.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::Model;

/// The instruction sets `forward` can run on, in increasing order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// The target's baseline (SSE2 on x86-64): always available.
    Portable,
    /// x86-64 with AVX2 and FMA.
    Avx2Fma,
    /// x86-64 with AVX-512F and AVX-512DQ (and AVX2 + FMA). Needs the crate built with
    /// Rust 1.89 or later, where AVX-512 intrinsics are stable; never detected otherwise.
    Avx512,
}

const UNKNOWN: u8 = 0;
const PORTABLE: u8 = 1;
const AVX2_FMA: u8 = 2;
const AVX512: u8 = 3;

static LEVEL: AtomicU8 = AtomicU8::new(UNKNOWN);

/// The best level the CPU supports, ignoring overrides.
pub fn detected() -> Level {
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") {
            if has!("avx512f") && has!("avx512dq") {
                return Level::Avx512;
            }
            return Level::Avx2Fma;
        }
    }
    #[cfg(all(target_arch = "x86_64", not(feature = "std")))]
    {
        if cfg!(all(target_feature = "avx2", target_feature = "fma")) {
            if cfg!(all(target_feature = "avx512f", target_feature = "avx512dq")) {
                return Level::Avx512;
            }
            return Level::Avx2Fma;
        }
    }
    Level::Portable
}

/// Every level the CPU supports, lowest first (always starts with
/// [`Level::Portable`]).
pub fn supported() -> &'static [Level] {
    const ALL: [Level; 3] = [Level::Portable, Level::Avx2Fma, Level::Avx512];
    &ALL[..=detected() as usize]
}

/// The level `forward` uses: detected once (capped by `CNN_SIMD=portable|avx2|avx512`),
/// then cached.
#[inline]
pub fn level() -> Level {
    #[cfg(not(feature = "std"))]
    {
        // Without run-time detection the best level is a compile-time constant: the
        // minimum lets the optimiser drop every kernel instance above it (flash).
        stored_level().min(detected())
    }
    #[cfg(feature = "std")]
    stored_level()
}

/// The cached (or, on first use, detected and capped) level.
#[inline]
fn stored_level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        PORTABLE => Level::Portable,
        AVX2_FMA => Level::Avx2Fma,
        AVX512 => Level::Avx512,
        _ => {
            #[cfg(feature = "std")]
            let cap = match std::env::var("CNN_SIMD") {
                Ok(v) if v.eq_ignore_ascii_case("portable") => Level::Portable,
                Ok(v) if v.eq_ignore_ascii_case("avx2") => Level::Avx2Fma,
                _ => Level::Avx512,
            };
            #[cfg(not(feature = "std"))]
            let cap = Level::Avx512;
            set_level(cap)
        }
    }
}

/// Sets the level used from now on, for every model and thread (for tests and
/// benchmarks). A level the CPU lacks falls back to the best one it has below it (down to
/// [`Level::Portable`]); returns the level actually set.
pub fn set_level(level: Level) -> Level {
    let level = level.min(detected());
    let code = match level {
        Level::Portable => PORTABLE,
        Level::Avx2Fma => AVX2_FMA,
        Level::Avx512 => AVX512,
    };
    LEVEL.store(code, Ordering::Relaxed);
    level
}

/// Bytes of a core's L1 data cache, read once with CPUID (leaf 4 on Intel, leaf
/// 0x8000_0005 on AMD) and cached; 0 where unknown (other targets, or a CPU that reports
/// neither). The kernels use it for choices that turned on it: a 1x1 convolution with a
/// long reduction on a large map runs by channel tiles on cores with less than 48 KiB
/// of L1d (AMD Zen 4: 32 KiB), by pixel tiles on the others (Intel Xeon: 48 KiB; see
/// `kernels/engine/rules.rs`, `auto_plan`).
pub(crate) fn l1d_bytes() -> usize {
    use core::sync::atomic::AtomicUsize;
    static L1D: AtomicUsize = AtomicUsize::new(usize::MAX);
    match L1D.load(Ordering::Relaxed) {
        usize::MAX => {
            let b = detect_l1d_bytes();
            L1D.store(b, Ordering::Relaxed);
            b
        }
        b => b,
    }
}

/// Whether the CPU is Intel's (CPUID leaf 0's vendor string "GenuineIntel"), read once
/// and cached; false on other targets. The kernels' software prefetches of what later
/// tiles read are measured to pay on Intel cores only (`kernels/engine/prefetch.rs`).
pub(crate) fn is_intel() -> bool {
    use core::sync::atomic::AtomicU8;
    static INTEL: AtomicU8 = AtomicU8::new(0);
    match INTEL.load(Ordering::Relaxed) {
        0 => {
            #[cfg(target_arch = "x86_64")]
            let yes = {
                let r = core::arch::x86_64::__cpuid(0);
                (r.ebx, r.edx, r.ecx) == (0x756e_6547, 0x4965_6e69, 0x6c65_746e)
            };
            #[cfg(not(target_arch = "x86_64"))]
            let yes = false;
            INTEL.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
            yes
        }
        v => v == 2,
    }
}

/// [`l1d_bytes`] uncached.
fn detect_l1d_bytes() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{__cpuid, __cpuid_count};
        let max_basic = __cpuid(0).eax;
        // Leaf 4 (deterministic cache parameters, Intel): each subleaf one cache; type 1
        // is data, level in bits 5-7; size = ways * partitions * line * sets.
        if max_basic >= 4 {
            for i in 0..16 {
                let r = __cpuid_count(4, i);
                let kind = r.eax & 0x1f;
                if kind == 0 {
                    break;
                }
                if kind == 1 && (r.eax >> 5) & 7 == 1 {
                    let ways = ((r.ebx >> 22) & 0x3ff) as usize + 1;
                    let parts = ((r.ebx >> 12) & 0x3ff) as usize + 1;
                    let line = (r.ebx & 0xfff) as usize + 1;
                    let sets = r.ecx as usize + 1;
                    return ways * parts * line * sets;
                }
            }
        }
        // AMD: leaf 0x8000_0005, ECX bits 24-31 = L1d KiB.
        if __cpuid(0x8000_0000).eax >= 0x8000_0005 {
            return ((__cpuid(0x8000_0005).ecx >> 24) as usize) * 1024;
        }
    }
    0
}

/// Runs `model.forward_body(input, output, arena)` compiled for the best available level,
/// subnormal floats flushed to zero ([`FlushSubnormals`]) for the call.
#[inline]
pub fn dispatch<M: Model>(model: &M, input: &[f32], output: &mut [f32], arena: &mut [f32]) {
    let _flush = FlushSubnormals::new();
    #[cfg(target_arch = "x86_64")]
    {
        match level() {
            Level::Avx512 => {
                // SAFETY: `level()` is `Avx512` only when `detected()` found AVX-512F,
                // AVX-512DQ, AVX2 and FMA (`set_level` caps it), the requirement of
                // `forward_avx512`.
                unsafe { forward_avx512(model, input, output, arena) };
                return;
            }
            Level::Avx2Fma => {
                // SAFETY: `level()` is `Avx2Fma` or above only when `detected()` found
                // AVX2 and FMA, the requirement of `forward_avx2_fma`.
                unsafe { forward_avx2_fma(model, input, output, arena) };
                return;
            }
            Level::Portable => {}
        }
    }
    forward_portable(model, input, output, arena);
}

/// `forward_body` for the portable level, in a function of its own like the other
/// levels': inlined into `dispatch`, its stack arenas would sit in `dispatch`'s frame
/// next to those of the level actually running (twice the stack).
#[inline(never)]
fn forward_portable<M: Model>(model: &M, input: &[f32], output: &mut [f32], arena: &mut [f32]) {
    model.forward_body(input, output, arena);
}

/// `forward_body` inlined into a function compiled for AVX2 and FMA.
///
/// # Safety
///
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2_fma<M: Model>(
    model: &M,
    input: &[f32],
    output: &mut [f32],
    arena: &mut [f32],
) {
    model.forward_body(input, output, arena);
}

/// `forward_body` inlined into a function compiled for AVX-512.
///
/// # Safety
///
/// The CPU must support AVX-512F, AVX-512DQ, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
unsafe fn forward_avx512<M: Model>(
    model: &M,
    input: &[f32],
    output: &mut [f32],
    arena: &mut [f32],
) {
    model.forward_body(input, output, arena);
}

/// MXCSR's flush-to-zero (results) and denormals-are-zero (operands) bits.
#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = 0x8040;

/// Subnormal floats flushed to zero on the calling thread while this lives (x86-64:
/// MXCSR's FTZ and DAZ bits, which SSE and AVX arithmetic follow), the previous mode
/// restored when it drops; nothing on other targets.
///
/// Why: a subnormal operand or result costs a microcode assist of ~100+ cycles per
/// instruction on Intel cores. They appear in real networks (activations decaying
/// towards zero), and a speculated multiply may even meet one that no result depends
/// on: LLVM turns the piecewise activations' `match` into selects and computes leaky
/// ReLU's `v * slope` for every activation. When the slope was an enum payload that the
/// other variants left uninitialised, stale stack bytes there made MobileNetV2's 960x7x7
/// depthwise layers take 415 instead of 59 µs inside the model (Intel Xeon, AVX-512);
/// [`crate::Act`] now holds a defined slope, and this guard covers the real ones.
/// Results change only for values below 1.2e-38 in magnitude, far inside the
/// conformance tolerance.
pub struct FlushSubnormals {
    /// The MXCSR value to restore (none: it already flushed).
    #[cfg(target_arch = "x86_64")]
    restore: Option<u32>,
}

impl FlushSubnormals {
    /// Sets FTZ and DAZ (when not already set) until the value drops.
    #[inline]
    pub fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let old = mxcsr();
            if old & FTZ_DAZ == FTZ_DAZ {
                return FlushSubnormals { restore: None };
            }
            set_mxcsr(old | FTZ_DAZ);
            FlushSubnormals { restore: Some(old) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        FlushSubnormals {}
    }
}

impl Default for FlushSubnormals {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FlushSubnormals {
    #[inline]
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        if let Some(old) = self.restore {
            set_mxcsr(old);
        }
    }
}

/// The calling thread's MXCSR (SSE control and status).
#[cfg(target_arch = "x86_64")]
#[inline]
fn mxcsr() -> u32 {
    let mut v: u32 = 0;
    // SAFETY: `stmxcsr` stores the 4-byte register to `v`, a live local (SSE is part of
    // x86-64); no stack use, flags untouched.
    unsafe {
        core::arch::asm!("stmxcsr [{}]", in(reg) &mut v, options(nostack, preserves_flags));
    }
    v
}

/// Loads `v` into the calling thread's MXCSR.
#[cfg(target_arch = "x86_64")]
#[inline]
fn set_mxcsr(v: u32) {
    // SAFETY: `ldmxcsr` reads the 4 bytes of `v`, a live local; callers pass a value
    // read by `stmxcsr` with only FTZ/DAZ changed (no reserved bit set, which would
    // fault); it is a memory clobber for the compiler, so no load or store of the
    // kernels moves across it.
    unsafe {
        core::arch::asm!("ldmxcsr [{}]", in(reg) &v, options(nostack, preserves_flags));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CPUID's L1d size is the one Linux reports (the first level-1 data cache of cpu0 in
    /// sysfs), where both exist; cached, it stays the same.
    #[test]
    fn l1d_bytes_is_what_linux_reports() {
        let got = l1d_bytes();
        assert_eq!(got, l1d_bytes());
        if !cfg!(target_arch = "x86_64") {
            assert_eq!(got, 0);
            return;
        }
        let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
        let read = |i: usize, f: &str| std::fs::read_to_string(dir.join(format!("index{i}/{f}")));
        let sysfs = (0..8).find_map(|i| {
            let (level, kind) = (read(i, "level").ok()?, read(i, "type").ok()?);
            if level.trim() != "1" || kind.trim() != "Data" {
                return None;
            }
            let size = read(i, "size").ok()?;
            let kib: usize = size.trim().strip_suffix('K')?.parse().ok()?;
            Some(kib * 1024)
        });
        match sysfs {
            Some(b) => assert_eq!(got, b, "CPUID says {got} bytes of L1d, sysfs {b}"),
            None => eprintln!("l1d_bytes: no sysfs cache information to compare ({got} bytes)"),
        }
        assert!(got == 0 || (8 * 1024..=1 << 20).contains(&got), "{got}");
    }

    /// The vendor test agrees with /proc/cpuinfo's vendor_id where Linux has one.
    #[test]
    fn is_intel_is_what_linux_reports() {
        let got = is_intel();
        assert_eq!(got, is_intel());
        let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
            return;
        };
        let vendor = info.lines().find_map(|l| {
            l.strip_prefix("vendor_id")?
                .split(':')
                .nth(1)
                .map(str::trim)
        });
        match vendor {
            Some(v) => assert_eq!(got, v == "GenuineIntel", "vendor_id {v}"),
            None => eprintln!("is_intel: no vendor_id in /proc/cpuinfo ({got})"),
        }
    }

    /// Inside the guard a product below the normal range is 0 and a subnormal operand
    /// reads as 0; outside (and after it drops) both are kept, and MXCSR is restored.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn flush_subnormals_sets_and_restores_the_mode() {
        use core::hint::black_box;
        let before = mxcsr();
        assert_eq!(
            before & FTZ_DAZ,
            0,
            "the test thread starts without FTZ/DAZ"
        );
        let tiny = || black_box(1e-30f32) * black_box(1e-10f32);
        let sub = f32::from_bits(1);
        assert!(tiny() > 0.0 && tiny().is_subnormal());
        {
            let _g = FlushSubnormals::new();
            assert_eq!(mxcsr() & FTZ_DAZ, FTZ_DAZ);
            assert_eq!(tiny(), 0.0);
            assert_eq!(black_box(sub) * black_box(2.0f32), 0.0);
            // Nested: the inner guard leaves the mode to the outer one.
            {
                let _inner = FlushSubnormals::new();
            }
            assert_eq!(mxcsr() & FTZ_DAZ, FTZ_DAZ);
        }
        // The control bits (the low six are sticky exception flags).
        assert_eq!(mxcsr() & !0x3f, before & !0x3f);
        assert!(tiny().is_subnormal());
        assert_eq!((black_box(sub) * black_box(2.0f32)).to_bits(), 2);
    }

    #[test]
    fn levels_are_consistent() {
        let d = detected();
        assert_eq!(supported().first(), Some(&Level::Portable));
        assert_eq!(supported().last(), Some(&d));
        assert_eq!(set_level(Level::Portable), Level::Portable);
        assert_eq!(level(), Level::Portable);
        assert_eq!(set_level(Level::Avx2Fma), Level::Avx2Fma.min(d));
        assert_eq!(level(), Level::Avx2Fma.min(d));
        assert_eq!(set_level(Level::Avx512), d);
        assert_eq!(level(), d);
    }
}
