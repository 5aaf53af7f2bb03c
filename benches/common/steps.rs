//! Per-step profile of a model for `benches/models.rs` (`--profile`, and the serve mode's
//! `profile MODEL SECONDS`): the median time of each of the model's planned steps
//! (`Model::STEPS`), from the timing marks the generated code records with the `profile`
//! feature (`cnn::profile::last_steps`).

use cnn::StepInfo;

/// Per-step medians (µs) of about `secs` seconds of forward passes (`run`, one pass on
/// the calling thread), after a warm-up of 2 passes; at least 5 passes. Returns the
/// medians and the number of passes. An error without the `profile` feature, or when a
/// pass recorded another number of steps than `steps` lists.
#[cfg(feature = "profile")]
pub fn profile(
    steps: &[StepInfo],
    secs: f64,
    mut run: impl FnMut(),
) -> Result<(Vec<f64>, usize), String> {
    run();
    run();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); steps.len()];
    let start = std::time::Instant::now();
    let mut runs = 0;
    while runs < 5 || start.elapsed().as_secs_f64() < secs {
        run();
        let times = cnn::profile::last_steps();
        if times.len() != steps.len() {
            return Err(format!(
                "a forward pass recorded {} steps, the model lists {}",
                times.len(),
                steps.len()
            ));
        }
        for (s, t) in samples.iter_mut().zip(times) {
            s.push(t.as_secs_f64() * 1e6);
        }
        runs += 1;
    }
    let medians = samples
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            super::harness::quantile(&v, 0.5)
        })
        .collect();
    Ok((medians, runs))
}

/// Without the `profile` feature there are no timing marks to read.
#[cfg(not(feature = "profile"))]
pub fn profile(
    _steps: &[StepInfo],
    _secs: f64,
    _run: impl FnMut(),
) -> Result<(Vec<f64>, usize), String> {
    Err("built without the `profile` feature: \
         cargo bench --features profile --bench models -- --profile MODEL"
        .into())
}

/// The per-step table: step, layer, kernel, MACs, median µs, share of the steps' total
/// and GFLOP/s (2 FLOPs per multiply-accumulate).
pub fn table(name: &str, steps: &[StepInfo], medians: &[f64], runs: usize) -> String {
    let total: f64 = medians.iter().sum();
    // Column widths: the longest cell, at least that of the fixed cells.
    let width =
        |cell: fn(&StepInfo) -> usize, min: usize| steps.iter().map(cell).fold(min, usize::max);
    let lw = width(|s| s.layer.len(), "(output)".len());
    let kw = width(|s| s.kernel.len(), "(sum of the step medians)".len());
    let mut out = format!(
        "\n{name}: {} steps, median of {runs} forward passes per step\n",
        steps.len()
    );
    out += &format!(
        "{:>4}  {:<lw$}  {:<kw$}  {:>12}  {:>10}  {:>6}  {:>8}\n",
        "step", "layer", "kernel", "MACs", "median µs", "share", "GFLOP/s"
    );
    for (i, (s, t)) in steps.iter().zip(medians).enumerate() {
        let gflops = if s.macs > 0 {
            format!("{:.1}", 2.0 * s.macs as f64 / t / 1e3)
        } else {
            String::new()
        };
        let layer = if s.layer.is_empty() {
            "(output)"
        } else {
            s.layer
        };
        out += &format!(
            "{i:>4}  {layer:<lw$}  {:<kw$}  {:>12}  {t:>10.2}  {:>5.1}%  {gflops:>8}\n",
            s.kernel,
            s.macs,
            100.0 * t / total
        );
    }
    let macs: usize = steps.iter().map(|s| s.macs).sum();
    out += &format!(
        "{:>4}  {:<lw$}  {:<kw$}  {macs:>12}  {total:>10.2}  {:>5.1}%  {:>8.1}\n",
        "",
        "total",
        "(sum of the step medians)",
        100.0,
        2.0 * macs as f64 / total / 1e3
    );
    out
}

/// The serve mode's answer to `profile`: the model, the passes and each step's layer,
/// kernel, MACs and median µs.
pub fn json(name: &str, steps: &[StepInfo], medians: &[f64], runs: usize) -> serde_json::Value {
    let steps: Vec<serde_json::Value> = steps
        .iter()
        .zip(medians)
        .map(|(s, t)| {
            serde_json::json!({
                "layer": s.layer,
                "kernel": s.kernel,
                "macs": s.macs,
                "median_us": t,
            })
        })
        .collect();
    serde_json::json!({ "model": name, "runs": runs, "steps": steps })
}
