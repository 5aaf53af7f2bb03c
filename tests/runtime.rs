//! Guarantees of generated models: no heap allocation in `forward`, the shared models
//! run on a 2 MiB stack, models are `Send + Sync` and give the same results from many
//! threads, and wrong inputs or weights are `Err`s that say what and where.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use cnn::{cnn_model, LoadError, Model, ShapeError};
use support::{random_input, random_weights, serialize, serialize_typed};

cnn_model! {
    /// LeNet-5 as in docs/LANGUAGE.md.
    #[file = "models/lenet5.toml"]
    pub struct LeNet5;
}
cnn_model! {
    /// VGG-style CIFAR net with batch norm.
    #[file = "models/cifar_vgg.toml"]
    pub struct CifarVgg;
}
cnn_model! {
    /// MobileNet-style depthwise-separable net.
    #[file = "models/mobilenet_96.toml"]
    pub struct MobileNet96;
}
cnn_model! {
    /// Fully convolutional segmentation-style net.
    #[file = "models/fcn_seg.toml"]
    pub struct FcnSeg;
}
cnn_model! {
    /// A model whose first layers work in place (activation and batch norm on the input)
    /// and whose last layer is softmax.
    pub struct InPlaceEdges {
        input: [2, 6, 6],
        relu,
        bn0: batch_norm,
        flatten,
        fc: linear(5),
        softmax,
    }
}

cnn_model! {
    /// Too big for stack arenas (2 x 64x112x112 floats): uses the per-thread scratch.
    pub struct Big {
        input: [3, 224, 224],
        stem: conv(64, kernel = 7, stride = 2, padding = 3),
        relu,
        c2: conv(64, kernel = 1),
        global_avg_pool,
        fc: linear(10),
    }
}

// ---- a counting global allocator ---------------------------------------------------

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// only addition is bumping a const-initialised thread-local counter, which neither
// allocates nor unwinds.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's: `layout` has non-zero size.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(|c| c.get());
    f();
    ALLOCATIONS.with(|c| c.get()) - before
}

fn no_allocation_in_forward<M: Model>() {
    let model = M::from_safetensors(&random_weights::<M>(1)).expect("weights load");
    let x = random_input::<M>(2);
    let mut y = vec![0.0f32; M::OUTPUT_LEN];
    let mut batch_out = vec![0.0f32; 2 * M::OUTPUT_LEN];
    let batch_in: Vec<f32> = x.iter().chain(x.iter()).copied().collect();
    // Sanity: the counter works.
    assert!(allocations_during(|| drop(std::hint::black_box(vec![1u8; 10]))) >= 1);
    // A model whose arena exceeds the stack limit borrows this thread's scratch buffer,
    // allocated on the thread's first call (as documented); none after that.
    model.forward_flat_into(&x, &mut y).unwrap();
    let n = allocations_during(|| {
        model.forward_flat_into(&x, &mut y).unwrap();
        // With `parallel`, a batch spawns threads (which allocate); checked on its own.
        #[cfg(not(feature = "parallel"))]
        model.forward_batch_into(&batch_in, &mut batch_out).unwrap();
    });
    #[cfg(feature = "parallel")]
    model.forward_batch_into(&batch_in, &mut batch_out).unwrap();
    assert_eq!(
        n,
        0,
        "{}: forward allocated {n} times",
        std::any::type_name::<M>()
    );
    assert!(y.iter().all(|v| v.is_finite()));
    assert_eq!(&batch_out[..M::OUTPUT_LEN], &y[..]);
}

#[test]
fn forward_allocates_nothing() {
    no_allocation_in_forward::<LeNet5>();
    no_allocation_in_forward::<CifarVgg>();
    no_allocation_in_forward::<MobileNet96>();
    no_allocation_in_forward::<FcnSeg>();
    no_allocation_in_forward::<InPlaceEdges>();
}

#[test]
fn big_models_use_a_reused_per_thread_buffer() {
    const { assert!(Big::ARENA_BYTES > cnn::__private::rt::scratch::STACK_LIMIT) };
    assert!(Big::summary().contains("per-thread buffer"));
    let model = Big::from_safetensors(&random_weights::<Big>(17)).unwrap();
    let x = random_input::<Big>(18);
    let mut y = [0.0f32; 10];
    model.forward_flat_into(&x, &mut y).unwrap(); // first call on this thread allocates
    let n = allocations_during(|| model.forward_flat_into(&x, &mut y).unwrap());
    assert_eq!(n, 0, "later calls reuse the buffer");
    // On a small stack too, and the same numbers.
    let model = Arc::new(*model);
    let (m, xi) = (Arc::clone(&model), x.clone());
    let z = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || m.forward_flat(&xi).unwrap())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(&z[..], &y[..]);
}

#[test]
fn nested_forward_allocates_nothing() {
    let model = LeNet5::from_safetensors(&random_weights::<LeNet5>(3)).unwrap();
    let x = [[[0.5f32; 32]; 32]; 1];
    // LeNet-5's arena (23.5 KB, above `STACK_LIMIT`) is this thread's scratch buffer,
    // allocated on the thread's first call, and with `parallel` on two threads it runs
    // as a team, whose exchange buffer the first team call allocates (as `summary()`
    // says); none after that.
    std::hint::black_box(model.forward(&x));
    let n = allocations_during(|| {
        std::hint::black_box(model.forward(&x));
    });
    assert_eq!(n, 0);
}

// ---- stack -------------------------------------------------------------------------

fn run_on_small_stack<M: Model + 'static>() {
    let weights = random_weights::<M>(4);
    let x = random_input::<M>(5);
    let model = M::from_safetensors(&weights).unwrap();
    let expected = model.forward_flat(&x).unwrap();
    let model = Arc::new(*model);
    let (m, xi) = (Arc::clone(&model), x.clone());
    let got = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let mut y = vec![0.0; M::OUTPUT_LEN];
            m.forward_flat_into(&xi, &mut y).unwrap();
            y
        })
        .unwrap()
        .join()
        .expect("forward overflowed a 2 MiB stack");
    assert_eq!(got, expected);
}

#[test]
fn shared_models_run_on_a_2_mib_stack() {
    run_on_small_stack::<LeNet5>();
    run_on_small_stack::<CifarVgg>();
    run_on_small_stack::<MobileNet96>();
    run_on_small_stack::<FcnSeg>();
}

// ---- threads -----------------------------------------------------------------------

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn models_are_send_sync_and_agree_across_threads() {
    assert_send_sync::<LeNet5>();
    assert_send_sync::<FcnSeg>();
    let model =
        Arc::new(*MobileNet96::from_safetensors(&random_weights::<MobileNet96>(6)).unwrap());
    let inputs: Vec<Vec<f32>> = (0..4)
        .map(|i| random_input::<MobileNet96>(10 + i))
        .collect();
    let expected: Vec<Vec<f32>> = inputs
        .iter()
        .map(|x| model.forward_flat(x).unwrap())
        .collect();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let (model, inputs) = (Arc::clone(&model), inputs.clone());
            std::thread::spawn(move || {
                (0..8)
                    .map(|k| model.forward_flat(&inputs[(t + k) % 4]).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for (t, h) in handles.into_iter().enumerate() {
        for (k, y) in h.join().unwrap().into_iter().enumerate() {
            assert_eq!(y, expected[(t + k) % 4], "thread {t}, call {k}");
        }
    }
}

// ---- in-place edges ----------------------------------------------------------------

#[test]
fn in_place_first_layers_do_not_touch_the_input() {
    let model = InPlaceEdges::from_safetensors(&random_weights::<InPlaceEdges>(7)).unwrap();
    let x: Vec<f32> = (0..72).map(|i| (i as f32 - 36.0) / 10.0).collect();
    let copy = x.clone();
    let y = model.forward_flat(&x).unwrap();
    assert_eq!(x, copy, "forward modified its input");
    let sum: f32 = y.iter().sum();
    assert!((sum - 1.0).abs() < 1e-5, "softmax output sums to {sum}");
    assert!(y.iter().all(|p| *p > 0.0));
}

// ---- errors ------------------------------------------------------------------------

#[test]
fn wrong_input_length_is_a_shape_error() {
    let model = LeNet5::from_safetensors(&random_weights::<LeNet5>(8)).unwrap();
    let err = model.forward_flat(&[0.0; 1000]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "input has 1000 values, expected 1024 (shape [1, 32, 32])"
    );
    let mut out = [0.0f32; 9];
    let err = model.forward_flat_into(&[0.0; 1024], &mut out).unwrap_err();
    assert!(matches!(
        err,
        ShapeError::Length {
            what: "output",
            expected: 10,
            got: 9,
            ..
        }
    ));
    let err = model
        .forward_batch_into(&[0.0; 1025], &mut [0.0; 10])
        .unwrap_err();
    assert!(err.to_string().contains("1025"), "{err}");
    let batch = ndarray::Array4::<f32>::zeros((2, 1, 28, 28));
    let err = model.forward_ndarray(batch.view()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "batch has shape [2, 1, 28, 28], expected [N, 1, 32, 32]"
    );
    let err = model
        .forward_array4(ndarray::Array4::<f32>::zeros((2, 1, 32, 32)).view())
        .unwrap_err();
    assert!(err.to_string().contains("[10]"), "{err}");
    let ok = model
        .forward_array2(ndarray::Array4::<f32>::zeros((3, 1, 32, 32)).view())
        .unwrap();
    assert_eq!(ok.dim(), (3, 10));
}

fn lenet_tensors() -> Vec<(String, Vec<usize>, Vec<u8>)> {
    LeNet5::WEIGHTS
        .iter()
        .map(|s| {
            let n: usize = s.shape.iter().product();
            (s.key.to_string(), s.shape.to_vec(), vec![0u8; 4 * n])
        })
        .collect()
}

#[test]
fn weight_errors_name_the_key_and_shapes() {
    // Wrong shape.
    let mut t = lenet_tensors();
    t[0].1 = vec![6, 1, 3, 3];
    t[0].2 = vec![0; 4 * 54];
    let err = LeNet5::from_safetensors(&serialize(&t)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "key `conv1.weight`: expected shape [6, 1, 5, 5], the file has [6, 1, 3, 3]"
    );
    // Missing key, with a near miss in the file.
    let mut t = lenet_tensors();
    t[5].0 = "fc1.biass".to_string();
    let err = LeNet5::from_safetensors(&serialize(&t)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LoadError::Many(_)), "{msg}");
    assert!(
        msg.contains("missing key `fc1.bias` (expected shape [120]); did you mean `fc1.biass`?"),
        "{msg}"
    );
    assert!(
        msg.contains("unexpected key `fc1.biass` with shape [120]"),
        "{msg}"
    );
    // Unexpected key only.
    let mut t = lenet_tensors();
    t.push(("fc4.weight".to_string(), vec![2, 2], vec![0; 16]));
    let err = LeNet5::from_safetensors(&serialize(&t)).unwrap_err();
    assert!(matches!(err, LoadError::UnexpectedKey { .. }), "{err}");
    assert!(err.to_string().contains("fc4.weight"));
    // Unsupported dtype.
    let mut typed: Vec<_> = lenet_tensors()
        .into_iter()
        .map(|(k, s, b)| (k, safetensors::Dtype::F32, s, b))
        .collect();
    typed[9].1 = safetensors::Dtype::I32;
    let err = LeNet5::from_safetensors(&serialize_typed(&typed)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "key `fc3.bias` (shape [10]): unsupported dtype I32; expected F32, F16, BF16 or F64"
    );
    // Garbage bytes.
    let err = LeNet5::from_safetensors(b"definitely not safetensors").unwrap_err();
    assert!(matches!(err, LoadError::Format(_)), "{err}");
    // A missing file names the path.
    let err = LeNet5::load("no/such/weights.safetensors").unwrap_err();
    assert!(
        err.to_string().contains("no/such/weights.safetensors"),
        "{err}"
    );
}

cnn_model! {
    /// The model of the weight-file fixtures in tests/weights_invalid/.
    #[file = "tests/weights_invalid/model.toml"]
    pub struct WeightFixtures;
}

/// The committed bad weight files (`tools/gen_weights_invalid.py`), which the UI tests
/// `tests/ui/weights_*.rs` reject at compile time, are `Err`s naming the key at run time.
#[test]
fn bad_weight_files_are_errors_naming_the_key() {
    let read = |name: &str| {
        let path = format!(
            "{}/tests/weights_invalid/{name}.safetensors",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    // The control: the same state_dict without a defect loads.
    WeightFixtures::from_safetensors(&read("ok")).expect("ok.safetensors loads");
    let cases = [
        ("missing_key", "missing key `fc.bias` (expected shape [3])"),
        (
            "extra_key",
            "unexpected key `conv2.weight` with shape [4, 2, 3, 3] in the weight file",
        ),
        (
            "wrong_shape",
            "key `fc.weight`: expected shape [3, 8], the file has [8, 3]",
        ),
        (
            "wrong_dtype",
            "key `conv1.weight` (shape [2, 1, 3, 3]): unsupported dtype U8; \
             expected F32, F16, BF16 or F64",
        ),
    ];
    for (name, message) in cases {
        let err = WeightFixtures::from_safetensors(&read(name))
            .err()
            .unwrap_or_else(|| panic!("{name}.safetensors loaded"));
        let variant_ok = match name {
            "missing_key" => matches!(err, LoadError::MissingKey { .. }),
            "extra_key" => matches!(err, LoadError::UnexpectedKey { .. }),
            "wrong_shape" => matches!(err, LoadError::ShapeMismatch { .. }),
            _ => matches!(err, LoadError::UnsupportedDtype { .. }),
        };
        assert!(variant_ok, "{name}: {err:?}");
        assert_eq!(err.to_string(), message, "{name}");
    }
}

#[test]
fn half_precision_and_f64_weights_load_and_agree() {
    let f32_file = random_weights::<LeNet5>(9);
    let st = safetensors::SafeTensors::deserialize(&f32_file).unwrap();
    let mut as_f64 = Vec::new();
    for spec in LeNet5::WEIGHTS {
        let t = st.tensor(spec.key).unwrap();
        let bytes: Vec<u8> = t
            .data()
            .chunks_exact(4)
            .flat_map(|c| (f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).to_le_bytes())
            .collect();
        as_f64.push((
            spec.key.to_string(),
            safetensors::Dtype::F64,
            spec.shape.to_vec(),
            bytes,
        ));
    }
    let a = LeNet5::from_safetensors(&f32_file).unwrap();
    let b = LeNet5::from_safetensors(&serialize_typed(&as_f64)).unwrap();
    let x = random_input::<LeNet5>(11);
    assert_eq!(a.forward_flat(&x).unwrap(), b.forward_flat(&x).unwrap());

    // F16 and BF16: weights rounded to multiples of 2^-7 in (-2, 2) are exact in both
    // formats, so the half-precision files must give exactly the f32 file's outputs.
    let exact: Vec<(String, Vec<usize>, Vec<f32>)> = LeNet5::WEIGHTS
        .iter()
        .map(|spec| {
            let t = st.tensor(spec.key).unwrap();
            let v = t
                .data()
                .chunks_exact(4)
                .map(|c| (f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * 128.0).round() / 128.0)
                .map(|v| {
                    if v == 0.0 {
                        1.0 / 128.0
                    } else {
                        v.clamp(-1.9, 1.9)
                    }
                })
                .collect();
            (spec.key.to_string(), spec.shape.to_vec(), v)
        })
        .collect();
    let encode = |dtype: safetensors::Dtype, f: fn(f32) -> u16| -> Vec<u8> {
        let typed: Vec<_> = exact
            .iter()
            .map(|(k, s, v)| {
                let bytes = v.iter().flat_map(|x| f(*x).to_le_bytes()).collect();
                (k.clone(), dtype, s.clone(), bytes)
            })
            .collect();
        serialize_typed(&typed)
    };
    // Both encoders are exact for these values (normal numbers, at most 8 significant bits).
    fn bf16(x: f32) -> u16 {
        assert_eq!(x.to_bits() & 0xFFFF, 0, "{x} is not exact in bf16");
        (x.to_bits() >> 16) as u16
    }
    fn f16(x: f32) -> u16 {
        let b = x.to_bits();
        let exp = ((b >> 23) & 0xFF) as i32 - 127;
        assert!(
            (-14..=15).contains(&exp) && b & 0x1FFF == 0,
            "{x} is not exact in f16"
        );
        (((b >> 31) << 15) | (((exp + 15) as u32) << 10) | ((b & 0x7F_FFFF) >> 13)) as u16
    }
    let reference: Vec<u8> = {
        let typed: Vec<_> = exact
            .iter()
            .map(|(k, s, v)| {
                let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                (k.clone(), safetensors::Dtype::F32, s.clone(), bytes)
            })
            .collect();
        serialize_typed(&typed)
    };
    let want = LeNet5::from_safetensors(&reference)
        .unwrap()
        .forward_flat(&x)
        .unwrap();
    for (dtype, f) in [
        (safetensors::Dtype::F16, f16 as fn(f32) -> u16),
        (safetensors::Dtype::BF16, bf16 as fn(f32) -> u16),
    ] {
        let model = LeNet5::from_safetensors(&encode(dtype, f))
            .unwrap_or_else(|e| panic!("{dtype:?} weights: {e}"));
        assert_eq!(model.forward_flat(&x).unwrap(), want, "{dtype:?}");
    }
}

#[test]
fn batch_norm_num_batches_tracked_is_accepted_and_ignored() {
    let file = random_weights::<CifarVgg>(12);
    let st = safetensors::SafeTensors::deserialize(&file).unwrap();
    let mut typed: Vec<_> = CifarVgg::WEIGHTS
        .iter()
        .map(|s| {
            let t = st.tensor(s.key).unwrap();
            (
                s.key.to_string(),
                safetensors::Dtype::F32,
                s.shape.to_vec(),
                t.data().to_vec(),
            )
        })
        .collect();
    typed.push((
        "conv1_bn.num_batches_tracked".to_string(),
        safetensors::Dtype::I64,
        vec![],
        7i64.to_le_bytes().to_vec(),
    ));
    let a = CifarVgg::from_safetensors(&file).unwrap();
    let b = CifarVgg::from_safetensors(&serialize_typed(&typed)).unwrap();
    let x = random_input::<CifarVgg>(13);
    assert_eq!(a.forward_flat(&x).unwrap(), b.forward_flat(&x).unwrap());
}

#[test]
fn constants_and_summary() {
    assert_eq!(LeNet5::INPUT_SHAPE, &[1, 32, 32]);
    assert_eq!(LeNet5::OUTPUT_SHAPE, &[10]);
    assert_eq!(LeNet5::PARAMS, 61_706);
    assert_eq!(LeNet5::MACS, 416_520);
    assert_eq!(FcnSeg::OUTPUT_SHAPE, &[4, 64, 64]);
    let s = LeNet5::summary();
    for needle in [
        "conv1",
        "[6, 28, 28]",
        "61,706",
        "416,520",
        "fc3",
        "weights:      268,544 bytes packed (WEIGHT_BYTES",
        "activations:  23,552 bytes (ARENA_BYTES: one arena of 5,888 floats",
        "keeps it in a per-thread buffer (with std",
    ] {
        assert!(s.contains(needle), "summary lacks {needle}:\n{s}");
    }
    // The bill: 5,888 floats of activations (4,704 + 1,176 rounded to whole lines); packed weights = params padded to whole
    // 16-channel panels (conv1: 1 panel x 25 taps + bias row, ...), 64 bytes a row.
    assert_eq!(LeNet5::ARENA_LEN, 5_888);
    assert_eq!(LeNet5::ARENA_BYTES, 4 * LeNet5::ARENA_LEN);
    let rows = (25 + 1) + (150 + 1) + 8 * (400 + 1) + 6 * (120 + 1) + (84 + 1);
    assert_eq!(LeNet5::WEIGHT_BYTES, 64 * rows);
    assert_eq!(LeNet5::WEIGHT_BYTES, 268_544);
    assert_eq!(LeNet5::STACK_BYTES, 65_536, "the convolution band buffer");
    assert!(s.contains("stack:        65,536 bytes of kernel buffers (STACK_BYTES"));
    assert!(s.contains("16,384 without std"));
    // Spatial outputs come back as nested arrays.
    let m = FcnSeg::from_safetensors(&random_weights::<FcnSeg>(14)).unwrap();
    let x = random_input::<FcnSeg>(15);
    let mut nested = Box::new([[[0.0f32; 64]; 64]; 3]);
    nested
        .as_flattened_mut()
        .as_flattened_mut()
        .copy_from_slice(&x);
    let y: [[[f32; 64]; 64]; 4] = m.forward(&nested);
    assert_eq!(
        y.as_flattened().as_flattened(),
        &m.forward_flat(&x).unwrap()[..]
    );
}

// ---- embedded weights --------------------------------------------------------------

cnn_model! {
    /// LeNet-5 with the bundled MNIST weights embedded at compile time.
    #[file = "models/lenet5.toml"]
    #[weights = "examples/data/lenet5/weights.safetensors"]
    pub struct EmbeddedLeNet5;
}

#[test]
fn embedded_weights_match_loaded_weights() {
    let loaded = LeNet5::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/data/lenet5/weights.safetensors"
    ))
    .unwrap();
    let embedded: &'static EmbeddedLeNet5 = EmbeddedLeNet5::embedded();
    assert!(
        std::ptr::eq(embedded, EmbeddedLeNet5::embedded()),
        "built once"
    );
    let x = random_input::<LeNet5>(16);
    assert_eq!(
        embedded.forward_flat(&x).unwrap(),
        loaded.forward_flat(&x).unwrap()
    );
    assert_eq!(EmbeddedLeNet5::EMBEDDED_WEIGHTS.len(), 247_656);
}

cnn_model! {
    /// The U-Net example's model, its weights loaded at run time (Winograd layers).
    #[file = "models/unet_shapes.toml"]
    pub struct UNet;
}

cnn_model! {
    /// The same with its weights embedded and every convolution direct.
    #[file = "models/unet_shapes.toml"]
    #[weights = "examples/data/unet_shapes/weights.safetensors"]
    #[winograd = false]
    pub struct EmbeddedDirectUNet;
}

/// `#[winograd = false]` with embedded weights: the macro packs the 3x3 layers that
/// would have run as Winograd for the direct engine (none in `summary()`), and the model
/// computes what the Winograd one loaded at run time does, within the conformance
/// tolerance.
#[test]
fn embedded_direct_model_matches_the_winograd_one() {
    assert!(UNet::summary().contains("winograd3x3"));
    let direct = EmbeddedDirectUNet::summary();
    assert!(!direct.contains("winograd"), "{direct}");
    assert!(direct.contains("conv2d+bn+relu"), "{direct}");
    let loaded = UNet::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/data/unet_shapes/weights.safetensors"
    ))
    .unwrap();
    let embedded = EmbeddedDirectUNet::embedded();
    for seed in [3, 4] {
        let x = random_input::<UNet>(seed);
        let (a, b) = (
            loaded.forward_flat(&x).unwrap(),
            embedded.forward_flat(&x).unwrap(),
        );
        assert_eq!(a.len(), b.len());
        for (i, (p, q)) in a.iter().zip(&b).enumerate() {
            assert!((p - q).abs() <= 1e-4 + 1e-4 * q.abs(), "{i}: {p} vs {q}");
        }
    }
}

// ---- dilated Winograd ----------------------------------------------------------------

cnn_model! {
    /// A dilated 3x3 layer with enough channel pairs for the polyphase Winograd.
    pub struct DilatedWinograd {
        input: [64, 17, 18],
        c: conv(64, kernel = 3, padding = 2, dilation = 2),
        relu,
    }
}

/// The compiler runs a dilated layer with many channel pairs as Winograd (its phase
/// mosaic), within the conformance tolerance of an f64 direct convolution.
#[test]
fn dilated_layer_runs_as_winograd() {
    let s = DilatedWinograd::summary();
    assert!(s.contains("winograd3x3"), "{s}");
    let (c, o, h, w) = (64, 64, 17, 18);
    let mut rng = support::Rng(21);
    let weight: Vec<f32> = (0..o * c * 9).map(|_| 0.04 * rng.uniform()).collect();
    let bias: Vec<f32> = (0..o).map(|_| 0.2 * rng.uniform()).collect();
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let st = serialize(&[
        ("c.weight".to_string(), vec![o, c, 3, 3], bytes(&weight)),
        ("c.bias".to_string(), vec![o], bytes(&bias)),
    ]);
    let m = DilatedWinograd::from_safetensors(&st).unwrap();
    let x: Vec<f32> = (0..c * h * w).map(|_| rng.uniform()).collect();
    let y = m.forward_flat(&x).unwrap();
    assert_eq!(y.len(), o * h * w);
    for oc in 0..o {
        for oy in 0..h {
            for ox in 0..w {
                let mut acc = f64::from(bias[oc]);
                for ic in 0..c {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (iy, ix) = (oy + 2 * ky, ox + 2 * kx);
                            if iy < 2 || ix < 2 || iy - 2 >= h || ix - 2 >= w {
                                continue;
                            }
                            let xv = x[(ic * h + iy - 2) * w + ix - 2];
                            let wv = weight[((oc * c + ic) * 3 + ky) * 3 + kx];
                            acc += f64::from(xv) * f64::from(wv);
                        }
                    }
                }
                let want = acc.max(0.0);
                let got = f64::from(y[(oc * h + oy) * w + ox]);
                assert!(
                    (got - want).abs() <= 1e-4 + 1e-4 * want.abs(),
                    "[{oc}][{oy}][{ox}]: got {got}, want {want}"
                );
            }
        }
    }
}

cnn_model! {
    /// A 1x1 expansion and the stride-2 depthwise layer reading it, on a map large
    /// enough that the compiler runs the two together band by band.
    pub struct ExpandDepthwise {
        input: [8, 128, 128],
        e: conv(64, kernel = 1, bias = false),
        e_bn: batch_norm,
        relu6,
        d: conv(64, kernel = 3, stride = 2, padding = 1, groups = 64),
        d_bn: batch_norm,
        hardswish,
    }
}

/// The fused pair (`summary()` shows one step for both layers) gives what the two
/// layers give, each batch norm, bias and activation in its place, against an f64 reference
/// of the two layers.
#[test]
fn fused_expansion_and_depthwise_equal_the_two_layers() {
    let s = ExpandDepthwise::summary();
    assert!(
        s.contains("conv2d+bn+relu6 > depthwise_conv2d+bn+hardswish"),
        "{s}"
    );
    let st_bytes = random_weights::<ExpandDepthwise>(23);
    let st = safetensors::SafeTensors::deserialize(&st_bytes).unwrap();
    let t = |k: &str| -> Vec<f64> {
        st.tensor(k)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect()
    };
    let bn = |p: &str| -> Vec<(f64, f64)> {
        let (w, b, m, v) = (
            t(&format!("{p}.weight")),
            t(&format!("{p}.bias")),
            t(&format!("{p}.running_mean")),
            t(&format!("{p}.running_var")),
        );
        (0..w.len())
            .map(|i| {
                let scale = w[i] / (v[i] + 1e-5).sqrt();
                (scale, b[i] - m[i] * scale)
            })
            .collect()
    };
    let (we, wd, bd) = (t("e.weight"), t("d.weight"), t("d.bias"));
    let (bn_e, bn_d) = (bn("e_bn"), bn("d_bn"));
    let (c, e, h, oh) = (8, 64, 128, 64);
    let x = random_input::<ExpandDepthwise>(24);
    let m = ExpandDepthwise::from_safetensors(&st_bytes).unwrap();
    let y = m.forward_flat(&x).unwrap();
    assert_eq!(y.len(), e * oh * oh);
    let relu6 = |v: f64| v.clamp(0.0, 6.0);
    let mut mid = vec![0.0f64; e * h * h];
    for o in 0..e {
        for p in 0..h * h {
            let acc: f64 = (0..c)
                .map(|i| we[o * c + i] * f64::from(x[i * h * h + p]))
                .sum();
            mid[o * h * h + p] = relu6(acc * bn_e[o].0 + bn_e[o].1);
        }
    }
    let mut worst = 0.0f64;
    for o in 0..e {
        for oy in 0..oh {
            for ox in 0..oh {
                let mut acc = bd[o];
                for ky in 0..3 {
                    for kx in 0..3 {
                        let (iy, ix) = ((2 * oy + ky) as isize - 1, (2 * ox + kx) as isize - 1);
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= h as isize {
                            continue;
                        }
                        acc +=
                            wd[o * 9 + ky * 3 + kx] * mid[(o * h + iy as usize) * h + ix as usize];
                    }
                }
                let v = acc * bn_d[o].0 + bn_d[o].1;
                let want = v * relu6(v + 3.0) / 6.0;
                let got = f64::from(y[(o * oh + oy) * oh + ox]);
                worst = worst.max((got - want).abs() / (1e-5 + 1e-5 * want.abs()));
            }
        }
    }
    assert!(worst <= 1.0, "worst error {worst} of the tolerance");
}
