//! LeNet-5 on a microcontroller-style budget: `#![no_std]`, no allocator, the weights
//! embedded at compile time (packed into read-only data by the macro), the activations
//! in a `static` arena, and a C ABI for the host program.
//!
//! Build: `cargo build -p cnn-embedded-example --profile embedded` (the profile sets
//! `panic = "abort"`). The memory bill is checked at compile time below; the test
//! `tests/embedded.rs` loads the library and compares its outputs bit for bit with the
//! std build of the same model.

#![no_std]

use cnn::{cnn_model, ArenaCell, Model};

cnn_model! {
    /// LeNet-5 (LeCun et al., 1998) with the MNIST example's trained weights.
    #[file = "../../models/lenet5.toml"]
    #[weights = "../../examples/data/lenet5/weights.safetensors"]
    pub struct LeNet5;
}

// The bill, checked when this crate compiles: RAM for the activations, flash for the
// packed weights. A model that outgrows the board fails the build, not the device.
const _: () = assert!(
    LeNet5::ARENA_BYTES <= 24 * 1024,
    "arena must fit 24 KiB of RAM"
);
const _: () = assert!(
    LeNet5::WEIGHT_BYTES <= 300 * 1024,
    "weights must fit 300 KiB of flash"
);

// And the kernels' stack buffer (the convolution band, 16 KiB without std).
const _: () = assert!(
    LeNet5::STACK_BYTES <= 16 * 1024,
    "stack buffers must fit 16 KiB"
);

/// The activation memory, in RAM (`.bss`), lent to one caller at a time.
static ARENA: ArenaCell<{ LeNet5::ARENA_LEN }> = ArenaCell::new();

/// Status codes of the C ABI.
const OK: i32 = 0;
/// A null pointer or a wrong length.
const BAD_ARGUMENT: i32 = -1;
/// Called again while a call is running (the arena is in use).
const BUSY: i32 = -2;

/// Runs LeNet-5 on one 32x32 grey image (`input_len` must be 1024, CHW order, normalised
/// as in training) and writes the 10 logits to `output` (`output_len` must be 10).
/// Returns 0, or -1 for a null pointer or wrong length, -2 when re-entered.
///
/// # Safety
///
/// `input` must point to `input_len` readable floats and `output` to `output_len`
/// writable floats, not overlapping, for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn cnn_lenet5_forward(
    input: *const f32,
    input_len: usize,
    output: *mut f32,
    output_len: usize,
) -> i32 {
    if input.is_null()
        || output.is_null()
        || input_len != LeNet5::INPUT_LEN
        || output_len != LeNet5::OUTPUT_LEN
    {
        return BAD_ARGUMENT;
    }
    // SAFETY: non-null (checked), and the caller guarantees `input_len` readable floats;
    // `[[[f32; 32]; 32]; 1]` has the layout of 1024 consecutive floats (the length was
    // checked) and f32's alignment.
    let image = unsafe { &*input.cast::<<LeNet5 as Model>::Input>() };
    // SAFETY: as above, for `output_len` (= 10) writable floats not aliasing `input`.
    let logits = unsafe { &mut *output.cast::<<LeNet5 as Model>::Output>() };
    let Some(mut arena) = ARENA.lock() else {
        return BUSY;
    };
    LeNet5::embedded().forward_in(image, logits, &mut arena);
    OK
}

/// The model's summary table (with the memory bill) as a NUL-terminated string.
#[no_mangle]
pub extern "C" fn cnn_lenet5_summary() -> *const u8 {
    SUMMARY.as_ptr()
}

/// `LeNet5::SUMMARY` with a terminating NUL, built at compile time.
const SUMMARY: [u8; LeNet5::SUMMARY.len() + 1] = {
    let text = LeNet5::SUMMARY.as_bytes();
    let mut out = [0u8; LeNet5::SUMMARY.len() + 1];
    let mut i = 0;
    while i < text.len() {
        out[i] = text[i];
        i += 1;
    }
    out
};

/// Writes the bytes of activation memory (RAM) and of packed weights (flash).
///
/// # Safety
///
/// Each pointer is null (skipped) or points to a writable `usize`.
#[no_mangle]
pub unsafe extern "C" fn cnn_lenet5_bill(arena_bytes: *mut usize, weight_bytes: *mut usize) {
    if !arena_bytes.is_null() {
        // SAFETY: non-null; the caller passes a writable usize or null.
        unsafe { *arena_bytes = LeNet5::ARENA_BYTES };
    }
    if !weight_bytes.is_null() {
        // SAFETY: as above.
        unsafe { *weight_bytes = LeNet5::WEIGHT_BYTES };
    }
}

/// A no_std library brings its own panic handler. Nothing here panics on valid input
/// (lengths are checked above); if something did, stop rather than unwind.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

/// The precompiled `core` carries unwind tables that name this symbol even with
/// `panic = "abort"`; nothing unwinds here, so it is never called. (A `no_std` binary on
/// a bare-metal target has no such reference; a shared library on a hosted one does.)
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
