//! The MNIST test set as bundled in `examples/data/mnist/` (gzipped IDX files), and the
//! PyTorch reference predictions written by the training scripts (`torch_reference.json`).

use std::error::Error;
use std::io::Read;
use std::path::{Path, PathBuf};

type BoxResult<T> = Result<T, Box<dyn Error>>;

/// `examples/data` of this crate.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data")
}

/// Reads a gzipped IDX file: returns its dimensions and bytes. A missing or malformed file
/// is an error naming the path.
pub fn read_idx(path: &Path, magic: u32) -> BoxResult<(Vec<usize>, Vec<u8>)> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let word = |i: usize| -> BoxResult<u32> {
        let b = bytes
            .get(4 * i..4 * i + 4)
            .ok_or_else(|| format!("{}: truncated IDX header", path.display()))?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    if word(0)? != magic {
        return Err(format!("{}: not an IDX file of magic {magic:#x}", path.display()).into());
    }
    let ndim = (magic & 0xff) as usize;
    let dims = (1..=ndim)
        .map(|i| word(i).map(|d| d as usize))
        .collect::<BoxResult<Vec<_>>>()?;
    let data = bytes.split_off(4 * (ndim + 1));
    if data.len() != dims.iter().product::<usize>() {
        return Err(format!("{}: size does not match its header", path.display()).into());
    }
    Ok((dims, data))
}

/// The 10,000 t10k test images (28x28 u8 each, concatenated) and their labels.
pub fn test_set() -> BoxResult<(Vec<u8>, Vec<u8>)> {
    let dir = data_dir().join("mnist");
    let (idims, images) = read_idx(&dir.join("t10k-images-idx3-ubyte.gz"), 0x803)?;
    let (_, labels) = read_idx(&dir.join("t10k-labels-idx1-ubyte.gz"), 0x801)?;
    if idims[1..] != [28, 28] || idims[0] != labels.len() {
        return Err(format!(
            "t10k: images {idims:?} do not match {} labels",
            labels.len()
        )
        .into());
    }
    Ok((images, labels))
}

/// Index of the largest value (the first one on ties), as `torch.argmax`.
pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
            if x > best.1 {
                (i, x)
            } else {
                best
            }
        })
        .0
}

/// PyTorch's predictions recorded at training time.
pub struct Reference {
    /// Test accuracy in `[0, 1]`.
    pub accuracy: f64,
    /// Predicted label of each test image, in file order.
    pub predictions: Vec<usize>,
}

/// Reads `predictions` and `test_accuracy` from a `torch_reference.json`.
pub fn read_reference(path: &Path) -> BoxResult<Reference> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let predictions = json["predictions"]
        .as_array()
        .ok_or_else(|| format!("{}: no `predictions`", path.display()))?
        .iter()
        .map(|v| {
            v.as_u64()
                .map(|p| p as usize)
                .ok_or("a prediction is not an integer")
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Reference {
        accuracy: json["test_accuracy"].as_f64().unwrap_or(f64::NAN),
        predictions,
    })
}

/// Prints the accuracy of `predictions` against `labels` next to PyTorch's, and how many
/// (and which) predictions differ from PyTorch's recorded ones.
pub fn report_accuracy(predictions: &[usize], labels: &[u8], reference: &Reference) {
    let n = predictions.len();
    let correct = predictions
        .iter()
        .zip(labels)
        .filter(|(p, l)| **p == **l as usize)
        .count();
    let differ: Vec<usize> = (0..n)
        .filter(|&i| predictions[i] != reference.predictions[i])
        .collect();
    println!(
        "accuracy: {:.2}% ({correct}/{n})   [PyTorch: {:.2}%]",
        100.0 * correct as f64 / n as f64,
        100.0 * reference.accuracy
    );
    println!(
        "predictions that differ from PyTorch's: {}{}",
        differ.len(),
        if differ.is_empty() {
            String::new()
        } else {
            format!(" (images {differ:?})")
        }
    );
}
