//! A small U-Net segmenting generated shapes (circles, squares, triangles), with weights
//! trained in PyTorch.
//!
//! ```text
//! cargo run --release --example unet_shapes
//! ```
//!
//! The network is `models/unet_shapes.toml`: 3x64x64 RGB -> 4x64x64 class probabilities
//! (background, circle, square, triangle). Its encoder has two 3x3 conv + batch norm +
//! ReLU blocks with 2x2 max pools in between; the decoder goes back up with a stride-2
//! `conv_transpose` and then a bilinear `upsample`, each followed by a skip `concat` with the
//! encoder's features of the same size; a 1x1 conv scores the 4 classes and a channel
//! `softmax` turns the scores into probabilities at every pixel.
//!
//! `tools/train_unet_shapes.py` generated the data set from a seed, trained the network
//! built from the same TOML, and bundled 16 held-out test images with their ground-truth
//! masks and PyTorch's predicted masks (`examples/data/unet_shapes/test.safetensors`) and
//! PyTorch's IoU (`torch_reference.json`). This example prints the model summary, the mean
//! IoU (intersection over union per class over all pixels, averaged over the 4 classes) next
//! to PyTorch's, the share of pixels where its mask agrees with PyTorch's, the latency per
//! image, and writes `target/unet_shapes.png`: for a few test images, the input, the
//! ground-truth mask and the predicted mask side by side.
//!
//! Preprocessing, identical to the training script: `x = u8 / 255` in f32, CHW order;
//! the predicted class of a pixel is the argmax of the 4 probabilities.

mod common;

use std::error::Error;
use std::path::Path;

use cnn::{cnn_model, Model};
use safetensors::{Dtype, SafeTensors};

cnn_model! {
    /// U-Net with a conv_transpose and a bilinear upsample in its decoder:
    /// 3x64x64 RGB -> per-pixel probabilities of background, circle, square, triangle.
    #[file = "models/unet_shapes.toml"]
    pub struct UnetShapes;
}

const SIZE: usize = 64;
const PLANE: usize = SIZE * SIZE;
const CLASSES: [&str; 4] = ["background", "circle", "square", "triangle"];
/// Colour of each class in the PNG.
const COLOURS: [[u8; 3]; 4] = [[30, 30, 30], [235, 70, 60], [70, 200, 90], [70, 120, 245]];
/// Test images shown in the PNG.
const SHOWN: usize = 6;
/// Each pixel of the PNG is a `ZOOM` x `ZOOM` block.
const ZOOM: u32 = 3;

type BoxResult<T> = Result<T, Box<dyn Error>>;

/// The bundled test set: u8 images `[n, 3, 64, 64]`, masks `[n, 64, 64]` and the masks
/// PyTorch predicted.
struct TestSet {
    n: usize,
    images: Vec<u8>,
    masks: Vec<u8>,
    torch_masks: Vec<u8>,
}

fn read_test_set(path: &Path) -> BoxResult<TestSet> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let get = |key: &str, tail: &[usize]| -> BoxResult<(usize, Vec<u8>)> {
        let t = st
            .tensor(key)
            .map_err(|e| format!("{}: `{key}`: {e}", path.display()))?;
        if t.dtype() != Dtype::U8 || t.shape().len() != tail.len() + 1 || &t.shape()[1..] != tail {
            return Err(format!(
                "{}: `{key}` is {:?} {:?}, expected U8 [n, {tail:?}]",
                path.display(),
                t.dtype(),
                t.shape()
            )
            .into());
        }
        Ok((t.shape()[0], t.data().to_vec()))
    };
    let (n, images) = get("images", &[3, SIZE, SIZE])?;
    let (nm, masks) = get("masks", &[SIZE, SIZE])?;
    let (nt, torch_masks) = get("torch_masks", &[SIZE, SIZE])?;
    if nm != n || nt != n || n == 0 {
        return Err(format!(
            "{}: {n} images, {nm} masks, {nt} torch masks",
            path.display()
        )
        .into());
    }
    Ok(TestSet {
        n,
        images,
        masks,
        torch_masks,
    })
}

/// PyTorch's mean IoU and IoU per class on the bundled test images.
fn read_reference(path: &Path) -> BoxResult<(f64, Vec<f64>)> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let iou = &json["test_iou"];
    let mean = iou["mean"]
        .as_f64()
        .ok_or_else(|| format!("{}: no `test_iou.mean`", path.display()))?;
    let per_class = CLASSES
        .iter()
        .map(|c| iou[*c].as_f64().unwrap_or(f64::NAN))
        .collect();
    Ok((mean, per_class))
}

/// A u8 CHW image as the network's input: `u8 / 255` in f32.
fn preprocess(image: &[u8]) -> Box<[[[f32; SIZE]; SIZE]; 3]> {
    let mut x = Box::new([[[0.0f32; SIZE]; SIZE]; 3]);
    for (v, &p) in x
        .as_flattened_mut()
        .as_flattened_mut()
        .iter_mut()
        .zip(image)
    {
        *v = p as f32 / 255.0;
    }
    x
}

/// Per pixel, the class of highest probability (the first on ties), as `torch.argmax`.
fn predicted_mask(probs: &[[[f32; SIZE]; SIZE]; 4]) -> Vec<u8> {
    let flat = probs.as_flattened().as_flattened();
    (0..PLANE)
        .map(|p| {
            (1..4).fold(0, |best, c| {
                if flat[c * PLANE + p] > flat[best * PLANE + p] {
                    c
                } else {
                    best
                }
            }) as u8
        })
        .collect()
}

/// IoU per class over all pixels, and their mean.
fn iou(pred: &[u8], truth: &[u8]) -> (f64, [f64; 4]) {
    let mut per_class = [0.0; 4];
    for (c, v) in per_class.iter_mut().enumerate() {
        let c = c as u8;
        let inter = pred
            .iter()
            .zip(truth)
            .filter(|(p, t)| **p == c && **t == c)
            .count();
        let union = pred
            .iter()
            .zip(truth)
            .filter(|(p, t)| **p == c || **t == c)
            .count();
        *v = if union == 0 {
            f64::NAN
        } else {
            inter as f64 / union as f64
        };
    }
    let valid: Vec<f64> = per_class.iter().copied().filter(|v| !v.is_nan()).collect();
    (valid.iter().sum::<f64>() / valid.len() as f64, per_class)
}

/// Input, ground truth and prediction of the first `SHOWN` test images, one row each.
fn write_png(path: &Path, set: &TestSet, preds: &[Vec<u8>]) -> BoxResult<()> {
    let gap = 4u32;
    let tile = SIZE as u32 * ZOOM;
    let rows = SHOWN.min(set.n) as u32;
    let (w, h) = (3 * tile + 4 * gap, rows * tile + (rows + 1) * gap);
    let mut img = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    for r in 0..rows as usize {
        let y0 = gap + r as u32 * (tile + gap);
        let image = &set.images[r * 3 * PLANE..(r + 1) * 3 * PLANE];
        let truth = &set.masks[r * PLANE..(r + 1) * PLANE];
        for y in 0..tile {
            for x in 0..tile {
                let p = (y / ZOOM) as usize * SIZE + (x / ZOOM) as usize;
                let rgb = [image[p], image[PLANE + p], image[2 * PLANE + p]];
                let cells = [
                    rgb,
                    COLOURS[truth[p] as usize],
                    COLOURS[preds[r][p] as usize],
                ];
                for (col, c) in cells.iter().enumerate() {
                    let x0 = gap + col as u32 * (tile + gap);
                    img.put_pixel(x0 + x, y0 + y, image::Rgb(*c));
                }
            }
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    img.save(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> BoxResult<()> {
    if let Some(a) = std::env::args().nth(1) {
        if a != "-h" && a != "--help" {
            return Err(format!("unknown argument `{a}` (this example takes none)").into());
        }
        println!("usage: cargo run --release --example unet_shapes");
        return Ok(());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("examples/data/unet_shapes");
    let model = UnetShapes::load(dir.join("weights.safetensors"))?;
    println!("{}\n", UnetShapes::summary());
    let set = read_test_set(&dir.join("test.safetensors"))?;
    let (torch_mean, torch_per_class) = read_reference(&dir.join("torch_reference.json"))?;

    let inputs: Vec<_> = set.images.chunks_exact(3 * PLANE).map(preprocess).collect();
    let preds: Vec<Vec<u8>> = inputs
        .iter()
        .map(|x| predicted_mask(&model.forward(x)))
        .collect();
    let all_preds: Vec<u8> = preds.concat();
    let (mean, per_class) = iou(&all_preds, &set.masks);
    let agree = all_preds
        .iter()
        .zip(&set.torch_masks)
        .filter(|(a, b)| a == b)
        .count();

    println!("{} test images, 64x64, IoU over all their pixels:", set.n);
    println!("  {:<12} {:>8} {:>9}", "class", "cnn", "PyTorch");
    for (c, name) in CLASSES.iter().enumerate() {
        println!(
            "  {name:<12} {:>8.4} {:>9.4}",
            per_class[c], torch_per_class[c]
        );
    }
    println!("  {:<12} {mean:>8.4} {torch_mean:>9.4}", "mean IoU");
    println!(
        "pixel agreement with PyTorch's predicted masks: {:.4}% ({} of {} pixels differ)",
        100.0 * agree as f64 / all_preds.len() as f64,
        all_preds.len() - agree,
        all_preds.len()
    );

    let mut i = 0;
    let samples = common::measure(None, || {
        std::hint::black_box(model.forward(std::hint::black_box(&inputs[i % set.n])));
        i += 1;
        Ok::<(), std::convert::Infallible>(())
    })?;
    println!(
        "latency: {} per image median, {} p90 ({} runs, batch 1, one core, {:?} kernels, {:.1} MMAC)",
        common::fmt_duration(samples.median()),
        common::fmt_duration(samples.quantile(0.9)),
        samples.len(),
        cnn::simd_level(),
        UnetShapes::MACS as f64 / 1e6
    );

    let png = root.join("target/unet_shapes.png");
    write_png(&png, &set, &preds)?;
    println!(
        "wrote {} (per row: input, ground truth, prediction; background dark grey, \
         circle red, square green, triangle blue)",
        png.display()
    );
    Ok(())
}
