//! Timing and reporting shared by the bench binaries (`benches/models.rs` and
//! `cnn-runtime/benches/ops.rs`, which includes this file by path): the same warm-up,
//! sample count, quantiles and JSON output, so their numbers are comparable.

use std::path::Path;
use std::time::{Duration, Instant};

/// Warms `run` up (at least 0.3 s and 10 runs), then times enough single runs for about
/// `time` (20 to 2,000,000 of them). Returns the sorted samples in seconds.
pub fn time_runs(time: Duration, mut run: impl FnMut()) -> Vec<f64> {
    let warm = Instant::now();
    let mut warm_runs = 0usize;
    while warm_runs < 10 || warm.elapsed() < Duration::from_millis(300) {
        run();
        warm_runs += 1;
    }
    let per_run = warm.elapsed().as_secs_f64() / warm_runs as f64;
    let runs = ((time.as_secs_f64() / per_run) as usize).clamp(20, 2_000_000);
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        run();
        samples.push(t0.elapsed().as_secs_f64());
    }
    samples.sort_by(f64::total_cmp);
    samples
}

/// The `q` quantile of sorted `v`, linear interpolation (numpy's default).
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Writes `value` as pretty JSON to `path`, creating its directory.
pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), String> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| format!("serializing the results: {e}"))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    std::fs::write(path, text + "\n").map_err(|e| format!("writing {}: {e}", path.display()))
}
