//! Tests of the weight loader: every error kind, hostile headers, dtypes, hints.

use super::*;
use proptest::prelude::*;

// ----- building files by hand -------------------------------------------------------

/// One tensor of a hand-written file: key, dtype name, shape, raw little-endian data.
struct T<'a> {
    key: &'a str,
    dtype: &'a str,
    shape: &'a [usize],
    data: Vec<u8>,
}

fn t<'a>(key: &'a str, dtype: &'a str, shape: &'a [usize], data: Vec<u8>) -> T<'a> {
    T {
        key,
        dtype,
        shape,
        data,
    }
}

/// F32 tensor whose values are `start, start + 1, ...`.
fn f32t<'a>(key: &'a str, shape: &'a [usize], start: f32) -> T<'a> {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .flat_map(|i| (start + i as f32).to_le_bytes())
        .collect();
    t(key, "F32", shape, data)
}

/// A safetensors file written by hand: 8-byte LE header length, JSON header (with a
/// `__metadata__` entry, not padded, so the data is usually unaligned), data.
fn file(tensors: &[T]) -> Vec<u8> {
    let mut header = String::from(r#"{"__metadata__":{"generator":"test"}"#);
    let mut offset = 0;
    for tensor in tensors {
        let shape: Vec<String> = tensor.shape.iter().map(|d| d.to_string()).collect();
        header.push_str(&format!(
            r#","{}":{{"dtype":"{}","shape":[{}],"data_offsets":[{},{}]}}"#,
            tensor.key,
            tensor.dtype,
            shape.join(","),
            offset,
            offset + tensor.data.len()
        ));
        offset += tensor.data.len();
    }
    header.push('}');
    raw(
        &header,
        &tensors
            .iter()
            .flat_map(|t| t.data.clone())
            .collect::<Vec<u8>>(),
    )
}

/// Header length, `header`, `data`.
fn raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn spec(key: &'static str, shape: &'static [usize]) -> TensorSpec {
    TensorSpec { key, shape }
}

const NBT: &[&str] = &["bn.num_batches_tracked"];

fn lenet_specs() -> Vec<TensorSpec> {
    vec![
        spec("conv1.weight", &[6, 1, 5, 5]),
        spec("conv1.bias", &[6]),
        spec("fc.weight", &[10, 84]),
        spec("fc.bias", &[10]),
    ]
}

fn lenet_file() -> Vec<u8> {
    file(&[
        f32t("conv1.weight", &[6, 1, 5, 5], 0.0),
        f32t("conv1.bias", &[6], 100.0),
        f32t("fc.weight", &[10, 84], 200.0),
        f32t("fc.bias", &[10], -5.0),
    ])
}

fn err(bytes: &[u8], specs: &[TensorSpec], ignored: &[&str]) -> LoadError {
    load_tensors(bytes, specs, ignored).expect_err("loading should fail")
}

// ----- success ----------------------------------------------------------------------

#[test]
fn load_valid_file_in_spec_order() {
    let mut specs = lenet_specs();
    specs.reverse();
    let out = load_tensors(&lenet_file(), &specs, &[]).unwrap();
    assert_eq!(out.len(), 4);
    assert_eq!(out[0], (0..10).map(|i| -5.0 + i as f32).collect::<Vec<_>>());
    assert_eq!(out[1].len(), 840);
    assert_eq!(out[1][839], 200.0 + 839.0);
    assert_eq!(out[2], (0..6).map(|i| 100.0 + i as f32).collect::<Vec<_>>());
    assert_eq!(out[3], (0..150).map(|i| i as f32).collect::<Vec<_>>());
}

#[test]
fn load_file_from_safetensors_serialize() {
    use safetensors::tensor::TensorView;
    let w: Vec<u8> = [1.0f32, -2.0, 3.5, 0.25]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let nbt = 7i64.to_le_bytes();
    let mut meta = std::collections::HashMap::new();
    meta.insert("generator".to_owned(), "test".to_owned());
    let bytes = safetensors::serialize(
        [
            (
                "lin.weight",
                TensorView::new(Dtype::F32, vec![2, 2], &w).unwrap(),
            ),
            (
                "bn.num_batches_tracked",
                TensorView::new(Dtype::I64, vec![], &nbt).unwrap(),
            ),
        ],
        Some(meta),
    )
    .unwrap();
    let out = load_tensors(&bytes, &[spec("lin.weight", &[2, 2])], NBT).unwrap();
    assert_eq!(out, vec![vec![1.0, -2.0, 3.5, 0.25]]);
}

#[test]
fn load_unaligned_data() {
    // Header of odd length and a buffer starting at an odd address: no value is aligned.
    let bytes = file(&[f32t("a", &[3], 1.0), f32t("bb", &[2, 2], 10.0)]);
    let mut shifted = vec![0u8];
    shifted.extend_from_slice(&bytes);
    let specs = [spec("bb", &[2, 2]), spec("a", &[3])];
    for buf in [&bytes[..], &shifted[1..]] {
        let out = load_tensors(buf, &specs, &[]).unwrap();
        assert_eq!(out, vec![vec![10.0, 11.0, 12.0, 13.0], vec![1.0, 2.0, 3.0]]);
    }
}

#[test]
fn load_num_batches_tracked_i64_is_ignored() {
    // As torch writes it: I64 scalar (shape []).
    let with_nbt = file(&[
        t(
            "bn.num_batches_tracked",
            "I64",
            &[],
            1234i64.to_le_bytes().to_vec(),
        ),
        f32t("bn.weight", &[3], 1.0),
    ]);
    let out = load_tensors(&with_nbt, &[spec("bn.weight", &[3])], NBT).unwrap();
    assert_eq!(out, vec![vec![1.0, 2.0, 3.0]]);
    // Any dtype and shape.
    let bytes = file(&[
        t("bn.num_batches_tracked", "U8", &[2, 1], vec![1, 2]),
        f32t("bn.weight", &[3], 1.0),
    ]);
    assert!(load_tensors(&bytes, &[spec("bn.weight", &[3])], NBT).is_ok());
    // Absent is fine too.
    let bytes = file(&[f32t("bn.weight", &[3], 1.0)]);
    assert!(load_tensors(&bytes, &[spec("bn.weight", &[3])], NBT).is_ok());
    // But not ignored unless listed.
    let e = err(&with_nbt, &[spec("bn.weight", &[3])], &[]);
    assert_eq!(
        e.to_string(),
        "unexpected key `bn.num_batches_tracked` with shape [] in the weight file"
    );
}

#[test]
fn load_empty_specs_and_empty_file() {
    let bytes = file(&[]);
    assert_eq!(
        load_tensors(&bytes, &[], &[]).unwrap(),
        Vec::<Vec<f32>>::new()
    );
    // `{}` without metadata, as safetensors writes an empty dict.
    assert!(load_tensors(&raw("{}", &[]), &[], &[]).is_ok());
    // Zero-sized tensors.
    let bytes = file(&[t("z", "F32", &[0, 3], vec![])]);
    assert_eq!(
        load_tensors(&bytes, &[spec("z", &[0, 3])], &[]).unwrap(),
        vec![Vec::<f32>::new()]
    );
}

// ----- conversions ------------------------------------------------------------------

#[test]
fn load_f16_known_bit_patterns() {
    let cases: &[(u16, f32)] = &[
        (0x0000, 0.0),
        (0x3C00, 1.0),
        (0xBC00, -1.0),
        (0x4000, 2.0),
        (0x3555, 0.333_251_95),
        (0x0001, 5.960_464_5e-8), // smallest subnormal, 2^-24
        (0x0002, 1.192_092_9e-7),
        (0x03FF, 6.097_555e-5),   // largest subnormal
        (0x0400, 6.103_515_6e-5), // smallest normal, 2^-14
        (0x7BFF, 65504.0),        // largest finite
        (0xFBFF, -65504.0),
        (0x7C00, f32::INFINITY),
        (0xFC00, f32::NEG_INFINITY),
    ];
    for &(bits, want) in cases {
        assert_eq!(f16_to_f32(bits), want, "f16 {bits:#06x}");
    }
    let neg_zero = f16_to_f32(0x8000);
    assert_eq!(neg_zero.to_bits(), 0x8000_0000);
    assert_eq!(f16_to_f32(0x8001), -5.960_464_5e-8);
    assert_eq!(f16_to_f32(0x0001).to_bits(), 0x3380_0000);
    let nan = f16_to_f32(0x7E00);
    assert!(nan.is_nan());
    assert_eq!(nan.to_bits(), 0x7FC0_0000); // quiet bit kept
    assert!(f16_to_f32(0x7C01).is_nan()); // signalling NaN stays NaN
    assert!(f16_to_f32(0xFE00).is_nan() && f16_to_f32(0xFE00).is_sign_negative());
}

#[test]
fn load_f16_all_values_match_formula() {
    for bits in 0..=u16::MAX {
        let got = f16_to_f32(bits);
        let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
        let exp = i32::from((bits >> 10) & 0x1f);
        let man = f64::from(bits & 0x3ff);
        let want = match exp {
            0 => sign * man * 2f64.powi(-24),
            31 if man == 0.0 => sign * f64::INFINITY,
            31 => f64::NAN,
            _ => sign * (1.0 + man / 1024.0) * 2f64.powi(exp - 15),
        };
        if want.is_nan() {
            assert!(got.is_nan(), "{bits:#06x}");
        } else {
            assert_eq!(f64::from(got), want, "{bits:#06x}");
            assert_eq!(got.is_sign_negative(), bits & 0x8000 != 0, "{bits:#06x}");
        }
    }
}

#[test]
fn load_bf16_known_bit_patterns() {
    assert_eq!(bf16_to_f32(0x3F80), 1.0);
    assert_eq!(bf16_to_f32(0xBF80), -1.0);
    assert_eq!(bf16_to_f32(0x4049), 3.140_625);
    assert_eq!(bf16_to_f32(0x0001).to_bits(), 0x0001_0000); // subnormal
    assert_eq!(bf16_to_f32(0x7F7F), 3.389_531_4e38); // largest finite
    assert_eq!(bf16_to_f32(0x7F80), f32::INFINITY);
    assert_eq!(bf16_to_f32(0xFF80), f32::NEG_INFINITY);
    assert!(bf16_to_f32(0x7FC0).is_nan());
    assert_eq!(bf16_to_f32(0x8000).to_bits(), 0x8000_0000);
}

#[test]
fn load_converts_f16_bf16_f64() {
    let f16: Vec<u8> = [0x3C00u16, 0x0001, 0x7BFF, 0xFC00]
        .iter()
        .flat_map(|b| b.to_le_bytes())
        .collect();
    let bf16: Vec<u8> = [0x3F80u16, 0xC000]
        .iter()
        .flat_map(|b| b.to_le_bytes())
        .collect();
    let f64s = [0.1f64, -1e300, 1.0 + f64::EPSILON, 3.0];
    let f64b: Vec<u8> = f64s.iter().flat_map(|v| v.to_le_bytes()).collect();
    let bytes = file(&[
        t("h", "F16", &[2, 2], f16),
        t("b", "BF16", &[2], bf16),
        t("d", "F64", &[4], f64b),
    ]);
    let specs = [spec("h", &[2, 2]), spec("b", &[2]), spec("d", &[4])];
    let out = load_tensors(&bytes, &specs, &[]).unwrap();
    assert_eq!(
        out[0],
        vec![1.0, 5.960_464_5e-8, 65504.0, f32::NEG_INFINITY]
    );
    assert_eq!(out[1], vec![1.0, -2.0]);
    assert_eq!(out[2], vec![0.1f32, f32::NEG_INFINITY, 1.0, 3.0]);
    // Round to nearest: 0.1f64 -> the f32 nearest to it.
    assert_eq!(out[2][0].to_bits(), 0x3DCC_CCCD);
}

// ----- each error kind --------------------------------------------------------------

#[test]
fn load_shape_mismatch_names_key_and_both_shapes() {
    let bytes = file(&[f32t("conv1.weight", &[6, 1, 3, 3], 0.0)]);
    let e = err(&bytes, &[spec("conv1.weight", &[6, 1, 5, 5])], &[]);
    assert!(matches!(e, LoadError::ShapeMismatch { .. }));
    assert_eq!(
        e.to_string(),
        "key `conv1.weight`: expected shape [6, 1, 5, 5], the file has [6, 1, 3, 3]"
    );
    // Rank differs, scalar.
    let bytes = file(&[t("s", "F32", &[], 1f32.to_le_bytes().to_vec())]);
    assert_eq!(
        err(&bytes, &[spec("s", &[1])], &[]).to_string(),
        "key `s`: expected shape [1], the file has []"
    );
}

#[test]
fn load_missing_key() {
    let bytes = file(&[f32t("fc.weight", &[2, 3], 0.0)]);
    let e = err(
        &bytes,
        &[spec("fc.weight", &[2, 3]), spec("fc.bias", &[2])],
        &[],
    );
    assert!(matches!(
        e,
        LoadError::MissingKey {
            did_you_mean: None,
            ..
        }
    ));
    assert_eq!(e.to_string(), "missing key `fc.bias` (expected shape [2])");
}

#[test]
fn load_unexpected_key() {
    let bytes = file(&[f32t("fc.weight", &[2, 3], 0.0), f32t("extra", &[4, 1], 0.0)]);
    let e = err(&bytes, &[spec("fc.weight", &[2, 3])], &[]);
    assert!(matches!(
        e,
        LoadError::UnexpectedKey {
            did_you_mean: None,
            ..
        }
    ));
    assert_eq!(
        e.to_string(),
        "unexpected key `extra` with shape [4, 1] in the weight file"
    );
}

#[test]
fn load_misspelt_key_did_you_mean_both_ways() {
    let bytes = file(&[f32t("conv1.weights", &[6, 1, 5, 5], 0.0)]);
    let e = err(&bytes, &[spec("conv1.weight", &[6, 1, 5, 5])], &[]);
    assert_eq!(
        e.to_string(),
        "2 problems loading the weights:\n  \
         - missing key `conv1.weight` (expected shape [6, 1, 5, 5]); did you mean `conv1.weights`?\n  \
         - unexpected key `conv1.weights` with shape [6, 1, 5, 5] in the weight file; did you mean `conv1.weight`?"
    );
}

#[test]
fn load_prefixed_and_renamed_keys_did_you_mean() {
    // A state_dict saved from a wrapper module: every key has a `model.` prefix.
    let bytes = file(&[
        f32t("model.conv1.weight", &[2], 0.0),
        f32t("model.fc.bias", &[1], 0.0),
    ]);
    let specs = [spec("conv1.weight", &[2]), spec("fc.bias", &[1])];
    let LoadError::Many(problems) = err(&bytes, &specs, &[]) else {
        panic!("expected Many");
    };
    let texts: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        texts,
        [
            "missing key `conv1.weight` (expected shape [2]); did you mean `model.conv1.weight`?",
            "missing key `fc.bias` (expected shape [1]); did you mean `model.fc.bias`?",
            "unexpected key `model.conv1.weight` with shape [2] in the weight file; did you mean `conv1.weight`?",
            "unexpected key `model.fc.bias` with shape [1] in the weight file; did you mean `fc.bias`?",
        ]
    );
    // The other way round: model names its layer `features.0`, the file has `0`.
    let bytes = file(&[f32t("0.weight", &[2], 0.0)]);
    let e = err(&bytes, &[spec("features.0.weight", &[2])], &[]);
    let text = e.to_string();
    assert!(
        text.contains(
            "missing key `features.0.weight` (expected shape [2]); did you mean `0.weight`?"
        ),
        "{text}"
    );
    assert!(text.contains("unexpected key `0.weight` with shape [2] in the weight file; did you mean `features.0.weight`?"), "{text}");
}

#[test]
fn load_did_you_mean_picks_closest_and_skips_far_keys() {
    assert_eq!(
        closest("conv1.weight", &["conv2.weights", "conv1.weights", "xyz"]),
        Some("conv1.weights")
    );
    assert_eq!(closest("fc.weight", &["fc.bias", "classifier.out"]), None);
    assert_eq!(closest("0.weight", &["features.10.weight"]), None);
    assert_eq!(closest("0.weight", &["1.weight"]), Some("1.weight"));
    assert_eq!(
        closest("conv1.weight", &["conv1.weighs", "backbone.conv1.weight"]),
        Some("backbone.conv1.weight")
    );
    assert_eq!(levenshtein(&['a', 'b', 'c'], &[]), 3);
    let k: Vec<char> = "kitten".chars().collect();
    let s: Vec<char> = "sitting".chars().collect();
    assert_eq!(levenshtein(&k, &s), 3);
}

#[test]
fn load_unsupported_dtype() {
    let bytes = file(&[t("conv1.weight", "I32", &[2, 2], vec![0; 16])]);
    let e = err(&bytes, &[spec("conv1.weight", &[2, 2])], &[]);
    assert!(matches!(e, LoadError::UnsupportedDtype { .. }));
    assert_eq!(
        e.to_string(),
        "key `conv1.weight` (shape [2, 2]): unsupported dtype I32; expected F32, F16, BF16 or F64"
    );
    for dtype in ["I64", "U8", "BOOL", "I8", "U16", "C64", "F8_E4M3"] {
        let size = match dtype {
            "I64" | "C64" => 8,
            "U16" => 2,
            _ => 1,
        };
        let bytes = file(&[t("w", dtype, &[3], vec![0; 3 * size])]);
        let e = err(&bytes, &[spec("w", &[3])], &[]);
        assert!(
            e.to_string()
                .contains(&format!("unsupported dtype {dtype};")),
            "{e}"
        );
    }
}

#[test]
fn load_many_problems_in_stable_order() {
    let bytes = file(&[
        f32t("zzz", &[1], 0.0),
        f32t("conv1.weight", &[6, 1, 3, 3], 0.0),
        t("fc.weight", "I32", &[10, 84], vec![0; 3360]),
        f32t("aaa", &[2], 0.0),
        t("bn.num_batches_tracked", "I64", &[], vec![0; 8]),
    ]);
    let specs = lenet_specs();
    let e = err(&bytes, &specs, NBT);
    let LoadError::Many(problems) = &e else {
        panic!("expected Many, got {e}");
    };
    assert_eq!(problems.len(), 6);
    assert_eq!(
        e.to_string(),
        "6 problems loading the weights:\n  \
         - key `conv1.weight`: expected shape [6, 1, 5, 5], the file has [6, 1, 3, 3]\n  \
         - missing key `conv1.bias` (expected shape [6])\n  \
         - key `fc.weight` (shape [10, 84]): unsupported dtype I32; expected F32, F16, BF16 or F64\n  \
         - missing key `fc.bias` (expected shape [10])\n  \
         - unexpected key `aaa` with shape [2] in the weight file\n  \
         - unexpected key `zzz` with shape [1] in the weight file"
    );
    // Same input, same message (no HashMap order leaking out).
    for _ in 0..5 {
        assert_eq!(err(&bytes, &specs, NBT).to_string(), e.to_string());
    }
}

#[test]
fn load_wrong_shape_and_dtype_of_one_key_are_both_reported() {
    let bytes = file(&[t("w", "I32", &[2], vec![0; 8])]);
    let e = err(&bytes, &[spec("w", &[3])], &[]);
    assert_eq!(
        e.to_string(),
        "2 problems loading the weights:\n  \
         - key `w`: expected shape [3], the file has [2]\n  \
         - key `w` (shape [2]): unsupported dtype I32; expected F32, F16, BF16 or F64"
    );
}

// ----- malformed files --------------------------------------------------------------

fn format_message(bytes: &[u8]) -> String {
    match err(bytes, &[spec("w", &[1])], &[]) {
        LoadError::Format(m) => m,
        other => panic!("expected Format, got {other}"),
    }
}

#[test]
fn load_format_errors_are_readable() {
    let m = format_message(&[1, 2, 3]);
    assert!(
        m.contains("header too small") && m.contains("3 bytes"),
        "{m}"
    );
    let m = format_message(&u64::MAX.to_le_bytes());
    assert!(m.contains("header too large"), "{m}");
    let mut huge = (1u64 << 40).to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    let m = format_message(&huge);
    assert!(m.contains("header too large"), "{m}");
    let mut long = 1000u64.to_le_bytes().to_vec();
    long.extend_from_slice(b"{}");
    let m = format_message(&long);
    assert!(
        m.contains("1000-byte header") && m.contains("only 2 bytes"),
        "{m}"
    );
    let m = format_message(&raw("not json", &[]));
    assert!(m.contains("invalid JSON"), "{m}");
    let m = format_message(&raw("{\"\u{ff}", &[]));
    assert!(m.contains("JSON"), "{m}");
    let mut bad_utf8 = 2u64.to_le_bytes().to_vec();
    bad_utf8.extend_from_slice(&[0xff, 0xfe]);
    let m = format_message(&bad_utf8);
    assert!(m.contains("UTF-8"), "{m}");
    let m = format_message(&raw(
        r#"{"w":{"dtype":"F99","shape":[1],"data_offsets":[0,4]}}"#,
        &[0; 4],
    ));
    assert!(m.contains("JSON") && m.contains("F99"), "{m}");
    // Deep nesting hits serde_json's recursion limit, not the stack.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let m = format_message(&raw(&deep, &[]));
    assert!(m.contains("JSON"), "{m}");
    // A header that is a JSON value but not an object of tensors.
    for header in [
        "[]",
        "1",
        "null",
        r#"{"w":1}"#,
        r#"{"__metadata__":{"a":1}}"#,
    ] {
        format_message(&raw(header, &[]));
    }
}

#[test]
fn load_offsets_out_of_range() {
    // Data shorter than declared.
    let m = format_message(&raw(
        r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        &[0; 3],
    ));
    assert!(m.contains("incomplete metadata"), "{m}");
    // Trailing bytes after the data.
    let m = format_message(&raw(
        r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        &[0; 5],
    ));
    assert!(m.contains("incomplete metadata"), "{m}");
    // Offsets not matching the shape.
    let m = format_message(&raw(
        r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#,
        &[0; 4],
    ));
    assert!(m.contains("invalid shape, data type, or offset"), "{m}");
    // Reversed, gapped and far out of range offsets.
    for offsets in [
        "[4,0]",
        "[4,8]",
        "[0,18446744073709551615]",
        "[1000000,1000004]",
    ] {
        let header = format!(r#"{{"w":{{"dtype":"F32","shape":[1],"data_offsets":{offsets}}}}}"#);
        format_message(&raw(&header, &[0; 4]));
    }
}

#[test]
fn load_offsets_that_overflow_safetensors_sum() {
    // Eight tensors of 2^61 - 1 bytes each end at 2^64 - 8: safetensors 0.8 would add the
    // header length to that without an overflow check.
    let size: u64 = (1 << 61) - 1;
    let mut header = String::from("{");
    for i in 0..8u64 {
        if i > 0 {
            header.push(',');
        }
        header.push_str(&format!(
            r#""t{i}":{{"dtype":"U8","shape":[{size}],"data_offsets":[{},{}]}}"#,
            i * size,
            (i + 1) * size
        ));
    }
    header.push('}');
    let m = format_message(&raw(&header, &[]));
    assert!(m.contains("too large"), "{m}");
}

#[test]
fn load_shapes_whose_product_overflows() {
    let big = usize::MAX / 4;
    for shape in [
        format!("[{big},{big},{big}]"),
        format!("[{},2]", usize::MAX / 2 + 1),
        "[4294967296,4294967296]".to_owned(),
        "[99999999999999999999999999999]".to_owned(),
    ] {
        let header = format!(r#"{{"w":{{"dtype":"F32","shape":{shape},"data_offsets":[0,4]}}}}"#);
        format_message(&raw(&header, &[0; 4]));
    }
    // A dimension of 0 makes the product 0 whatever the others are.
    let header = r#"{"w":{"dtype":"F32","shape":[0,1000000000000],"data_offsets":[0,0]}}"#;
    let e = err(&raw(header, &[]), &[spec("w", &[1])], &[]);
    assert_eq!(
        e.to_string(),
        "key `w`: expected shape [1], the file has [0, 1000000000000]"
    );
}

#[test]
fn load_header_scan_ignores_digits_in_strings() {
    // A key made of digits, and escapes, must not trip the large-number check.
    let key = "99999999999999999999999999999";
    let bytes = file(&[f32t(key, &[1], 0.0), f32t(r#"a\"1\\"#, &[1], 0.0)]);
    let e = err(&bytes, &[spec(key, &[1])], &[]);
    assert_eq!(
        e.to_string(),
        r#"unexpected key `a"1\` with shape [1] in the weight file"#
    );
}

#[test]
fn load_many_unexpected_keys_skip_hints() {
    let keys: Vec<String> = (0..2000).map(|i| format!("k{i}")).collect();
    let tensors: Vec<T> = keys.iter().map(|k| t(k, "F32", &[0], vec![])).collect();
    let bytes = file(&tensors);
    let specs: Vec<TensorSpec> = (0..100)
        .map(|i| spec(Box::leak(format!("k{i}x").into_boxed_str()), &[1]))
        .collect();
    let LoadError::Many(problems) = err(&bytes, &specs, &[]) else {
        panic!("expected Many");
    };
    assert_eq!(problems.len(), 2100);
    assert!(problems
        .iter()
        .all(|p| !p.to_string().contains("did you mean")));
}

// ----- hostile bytes never panic ----------------------------------------------------

fn dtype_name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "F32", "F16", "BF16", "F64", "I64", "I32", "U8", "BOOL", "F4", "F6_E2M3", "C64", "F8_E5M2",
        "XX",
    ])
}

fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..64,
        Just(u64::MAX),
        Just(u64::MAX / 8),
        Just((1 << 61) - 1),
        Just(1 << 32),
        any::<u64>(),
    ]
}

proptest! {
    #[test]
    fn load_random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = load_tensors(&bytes, &lenet_specs(), NBT);
    }

    #[test]
    fn load_random_header_never_panics(header in "\\PC{0,200}", data in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = load_tensors(&raw(&header, &data), &[spec("w", &[1])], &[]);
    }

    #[test]
    fn load_mutated_valid_file_never_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
        len_field in prop::option::of(any::<u64>()),
    ) {
        let mut bytes = file(&[
            f32t("conv1.weight", &[6, 1, 5, 5], 0.0),
            t("bn.num_batches_tracked", "I64", &[], vec![0; 8]),
            t("conv1.bias", "F16", &[6], vec![0x3c; 12]),
            f32t("fc.weight", &[10, 84], 200.0),
            t("fc.bias", "F64", &[10], vec![1; 80]),
        ]);
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        if let Some(n) = len_field {
            bytes[..8].copy_from_slice(&n.to_le_bytes());
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        let _ = load_tensors(&bytes, &lenet_specs(), NBT);
    }

    #[test]
    fn load_structured_hostile_headers_never_panic(
        tensors in prop::collection::vec(
            (
                prop::sample::select(vec!["w0", "w1", "w0s", "m.w1", "bn.num_batches_tracked", "x"]),
                dtype_name(),
                prop::collection::vec(prop_oneof![3 => 0u64..4, 1 => number()], 0..4),
                any::<bool>(),
                number(),
                number(),
            ),
            0..5,
        ),
        extra_data in prop_oneof![Just(0usize), 0usize..16],
    ) {
        // Offsets either consistent with shape and dtype (so the file often parses and
        // the key/shape/dtype checks run) or arbitrary.
        let mut offset: u64 = 0;
        let entries: Vec<String> = tensors
            .iter()
            .map(|(key, dtype, shape, consistent, s, e)| {
                let (s, e) = if *consistent {
                    let bits: u64 = match *dtype {
                        "F4" => 4,
                        "F6_E2M3" => 6,
                        "U8" | "BOOL" | "F8_E5M2" => 8,
                        "F16" | "BF16" => 16,
                        "F32" | "I32" => 32,
                        _ => 64,
                    };
                    let n = shape.iter().try_fold(bits, |n, &d| n.checked_mul(d));
                    let size = n.map_or(1, |n| n / 8).min(4096);
                    let (s, e) = (offset, offset + size);
                    offset = e;
                    (s, e)
                } else {
                    (*s, *e)
                };
                let shape: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
                format!(
                    r#""{key}":{{"dtype":"{dtype}","shape":[{}],"data_offsets":[{s},{e}]}}"#,
                    shape.join(",")
                )
            })
            .collect();
        let header = format!("{{{}}}", entries.join(","));
        let data = vec![0x3f; offset as usize + extra_data];
        let specs = [spec("w0", &[1]), spec("w1", &[2, 2])];
        let _ = load_tensors(&raw(&header, &data), &specs, NBT);
    }

    #[test]
    fn load_random_f32_roundtrip(values in prop::collection::vec(any::<f32>(), 0..40), pad in 0usize..8) {
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let shape = [values.len()];
        let key = "k".repeat(pad + 1);
        let bytes = file(&[t(&key, "F32", &shape, data)]);
        let specs = [TensorSpec { key: Box::leak(key.clone().into_boxed_str()), shape: Box::leak(Box::new(shape)) }];
        let out = load_tensors(&bytes, &specs, &[]).unwrap();
        let got: Vec<u32> = out[0].iter().map(|v| v.to_bits()).collect();
        let want: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
        prop_assert_eq!(got, want);
    }
}
