//! The `no_std` example (`examples/embedded`: LeNet-5, embedded weights, a static arena,
//! no allocator) gives the same bits as the std build of the same model.
//!
//! The test builds the example as the allocator-free `cdylib` it is (its own cargo
//! invocation of its own workspace, so `cnn` really has no default features there), loads it with `dlopen` and compares
//! its logits bit for bit with `LeNet5::from_safetensors` of the same file and with the
//! std build's `embedded()`, both at the portable level (what the library, compiled for
//! the x86-64 baseline without run-time detection, runs on).

#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::PathBuf;
use std::process::Command;

use cnn::{cnn_model, Model};

cnn_model! {
    #[file = "models/lenet5.toml"]
    pub struct LeNet5;
}

cnn_model! {
    #[file = "models/lenet5.toml"]
    #[weights = "examples/data/lenet5/weights.safetensors"]
    pub struct EmbeddedLeNet5;
}

extern "C" {
    fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dlerror() -> *const c_char;
}

const RTLD_NOW: c_int = 2;

type Forward = unsafe extern "C" fn(*const f32, usize, *mut f32, usize) -> i32;
type Bill = unsafe extern "C" fn(*mut usize, *mut usize);
type Summary = unsafe extern "C" fn() -> *const u8;

/// Builds the example with its own profile and target directory; returns the library.
fn build_cdylib() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("embedded");
    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args(["build", "--manifest-path", "examples/embedded/Cargo.toml"])
        .args(["--profile", "embedded"])
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the no_std example builds");
    let lib = target.join("embedded").join("libcnn_embedded_example.so");
    assert!(lib.is_file(), "{} exists", lib.display());
    lib
}

/// The address of `name` in the library `handle`.
fn symbol(handle: *mut c_void, name: &str) -> *mut c_void {
    let c = CString::new(name).unwrap();
    // SAFETY: `handle` came from a successful dlopen and `c` is NUL-terminated.
    let p = unsafe { dlsym(handle, c.as_ptr()) };
    assert!(!p.is_null(), "symbol {name} exported");
    p
}

/// Deterministic inputs: random images, a blank one, a saturated one.
fn inputs() -> Vec<Vec<f32>> {
    let mut s = 0x2545_f491_u32;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        s as f32 / u32::MAX as f32
    };
    let mut v: Vec<Vec<f32>> = (0..16)
        .map(|_| (0..1024).map(|_| next() * 4.0 - 1.0).collect())
        .collect();
    v.push(vec![0.0; 1024]);
    v.push(vec![30.0; 1024]);
    v
}

#[test]
fn no_std_cdylib_matches_the_std_build_bit_for_bit() {
    let lib = build_cdylib();
    let path = CString::new(lib.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path; the library has no initialisers beyond Rust statics.
    let handle = unsafe { dlopen(path.as_ptr(), RTLD_NOW) };
    if handle.is_null() {
        // SAFETY: dlerror returns a NUL-terminated message after a failed dlopen.
        let msg = unsafe { CStr::from_ptr(dlerror()) };
        panic!("dlopen {}: {}", lib.display(), msg.to_string_lossy());
    }
    // SAFETY: the example exports these symbols with exactly these signatures.
    let forward: Forward = unsafe { std::mem::transmute(symbol(handle, "cnn_lenet5_forward")) };
    // SAFETY: as above.
    let bill: Bill = unsafe { std::mem::transmute(symbol(handle, "cnn_lenet5_bill")) };
    // SAFETY: as above.
    let summary: Summary = unsafe { std::mem::transmute(symbol(handle, "cnn_lenet5_summary")) };

    // The bill the library reports is the std build's: same plan, same packing.
    let (mut arena, mut weights) = (0usize, 0usize);
    // SAFETY: two valid pointers to usize.
    unsafe { bill(&mut arena, &mut weights) };
    assert_eq!(arena, EmbeddedLeNet5::ARENA_BYTES);
    assert_eq!(weights, EmbeddedLeNet5::WEIGHT_BYTES);
    // SAFETY: the library returns a pointer to a NUL-terminated static string.
    let text = unsafe { CStr::from_ptr(summary().cast()) };
    assert_eq!(
        text.to_str().unwrap(),
        EmbeddedLeNet5::SUMMARY.replace("EmbeddedLeNet5", "LeNet5")
    );

    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/data/lenet5/weights.safetensors"
    ))
    .unwrap();
    let loaded = LeNet5::from_safetensors(&bytes).unwrap();
    let embedded = EmbeddedLeNet5::embedded();
    assert_eq!(
        cnn::set_simd_level(cnn::Level::Portable),
        cnn::Level::Portable
    );
    for (i, x) in inputs().iter().enumerate() {
        let mut got = [0.0f32; 10];
        // SAFETY: 1024 readable floats in, 10 writable floats out.
        let status = unsafe { forward(x.as_ptr(), x.len(), got.as_mut_ptr(), got.len()) };
        assert_eq!(status, 0, "input {i}");
        let want = loaded.forward_flat(x).unwrap();
        let also = embedded.forward_flat(x).unwrap();
        assert!(
            got.iter().any(|v| *v != 0.0),
            "input {i}: the library computed something"
        );
        for k in 0..10 {
            assert_eq!(
                got[k].to_bits(),
                want[k].to_bits(),
                "input {i}, logit {k}: no_std {} vs std {}",
                got[k],
                want[k]
            );
            assert_eq!(got[k].to_bits(), also[k].to_bits(), "input {i}, logit {k}");
        }
    }

    // Bad arguments are reported, not UB or a panic.
    let mut out = [0.0f32; 10];
    // SAFETY: the lengths are wrong on purpose; the library checks them before reading.
    assert_eq!(
        unsafe { forward([0.0f32; 4].as_ptr(), 4, out.as_mut_ptr(), 10) },
        -1
    );
    // SAFETY: a null input pointer is rejected before any access.
    assert_eq!(
        unsafe { forward(std::ptr::null(), 1024, out.as_mut_ptr(), 10) },
        -1
    );
}
