//! Per-step profile of a model for `benches/models.rs` (`--profile`, and the serve mode's
//! `profile MODEL SECONDS`): the median time of each of the model's planned steps
//! (`Model::STEPS`), from the timing marks the generated code records with the `profile`
//! feature (`cnn::profile::last_steps`).

use cnn::StepInfo;

/// One step's medians over the profiled passes (µs; the split calls' counts as recorded).
#[derive(Clone, Copy, Debug, Default)]
pub struct StepStat {
    /// Wall time of the step.
    pub median: f64,
    /// Time the calling thread spent in parts of the step's split kernel calls.
    pub caller: f64,
    /// Time the pool's workers spent in them (summed over the workers).
    pub workers: f64,
    /// Split kernel calls of the step (the largest count seen in a pass).
    pub jobs: u32,
}

/// Per-step medians of about `secs` seconds of forward passes (`run`, one pass on the
/// calling thread), after a warm-up of 2 passes; at least 5 passes. Returns the steps'
/// statistics and the number of passes. An error without the `profile` feature, or when
/// a pass recorded another number of steps than `steps` lists.
#[cfg(feature = "profile")]
pub fn profile(
    steps: &[StepInfo],
    secs: f64,
    mut run: impl FnMut(),
) -> Result<(Vec<StepStat>, usize), String> {
    run();
    run();
    // Per step: wall, caller and workers µs of every pass.
    let mut samples: Vec<[Vec<f64>; 3]> = vec![Default::default(); steps.len()];
    let mut jobs = vec![0u32; steps.len()];
    let start = std::time::Instant::now();
    let mut runs = 0;
    while runs < 5 || start.elapsed().as_secs_f64() < secs {
        run();
        let times = cnn::profile::last_steps();
        let work = cnn::profile::last_step_work();
        if times.len() != steps.len() || work.len() != steps.len() {
            return Err(format!(
                "a forward pass recorded {} steps, the model lists {}",
                times.len(),
                steps.len()
            ));
        }
        for (((s, t), w), j) in samples.iter_mut().zip(times).zip(work).zip(&mut jobs) {
            s[0].push(t.as_secs_f64() * 1e6);
            s[1].push(w.caller.as_secs_f64() * 1e6);
            s[2].push(w.workers.as_secs_f64() * 1e6);
            *j = (*j).max(w.jobs);
        }
        runs += 1;
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        super::harness::quantile(&v, 0.5)
    };
    let stats = samples
        .into_iter()
        .zip(jobs)
        .map(|([wall, caller, workers], jobs)| StepStat {
            median: median(wall),
            caller: median(caller),
            workers: median(workers),
            jobs,
        })
        .collect();
    Ok((stats, runs))
}

/// Without the `profile` feature there are no timing marks to read.
#[cfg(not(feature = "profile"))]
pub fn profile(
    _steps: &[StepInfo],
    _secs: f64,
    _run: impl FnMut(),
) -> Result<(Vec<StepStat>, usize), String> {
    Err("built without the `profile` feature: \
         cargo bench --features profile --bench models -- --profile MODEL"
        .into())
}

/// The per-step table: step, layer, kernel, MACs, median µs, share of the steps' total,
/// GFLOP/s (2 FLOPs per multiply-accumulate) and, for steps with split kernel calls
/// (`parallel`), the calls, and the calling thread's and the workers' µs in their parts.
pub fn table(name: &str, steps: &[StepInfo], stats: &[StepStat], runs: usize) -> String {
    let total: f64 = stats.iter().map(|s| s.median).sum();
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
        "{:>4}  {:<lw$}  {:<kw$}  {:>12}  {:>10}  {:>6}  {:>8}  {:>5}  {:>9}  {:>10}\n",
        "step",
        "layer",
        "kernel",
        "MACs",
        "median µs",
        "share",
        "GFLOP/s",
        "splits",
        "caller µs",
        "workers µs"
    );
    for (i, (s, t)) in steps.iter().zip(stats).enumerate() {
        let gflops = if s.macs > 0 {
            format!("{:.1}", 2.0 * s.macs as f64 / t.median / 1e3)
        } else {
            String::new()
        };
        let layer = if s.layer.is_empty() {
            "(output)"
        } else {
            s.layer
        };
        let work = if t.jobs > 0 {
            format!("{:>6}  {:>9.2}  {:>10.2}", t.jobs, t.caller, t.workers)
        } else {
            String::new()
        };
        out += &format!(
            "{i:>4}  {layer:<lw$}  {:<kw$}  {:>12}  {:>10.2}  {:>5.1}%  {gflops:>8}  {work}\n",
            s.kernel,
            s.macs,
            t.median,
            100.0 * t.median / total
        );
    }
    let macs: usize = steps.iter().map(|s| s.macs).sum();
    let (caller, workers): (f64, f64) = stats
        .iter()
        .map(|s| (s.caller, s.workers))
        .fold((0.0, 0.0), |(a, b), (c, w)| (a + c, b + w));
    let jobs: u32 = stats.iter().map(|s| s.jobs).sum();
    let work = if jobs > 0 {
        format!("{jobs:>6}  {caller:>9.2}  {workers:>10.2}")
    } else {
        String::new()
    };
    out += &format!(
        "{:>4}  {:<lw$}  {:<kw$}  {macs:>12}  {total:>10.2}  {:>5.1}%  {:>8.1}  {work}\n",
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
pub fn json(name: &str, steps: &[StepInfo], stats: &[StepStat], runs: usize) -> serde_json::Value {
    let steps: Vec<serde_json::Value> = steps
        .iter()
        .zip(stats)
        .map(|(s, t)| {
            serde_json::json!({
                "layer": s.layer,
                "kernel": s.kernel,
                "macs": s.macs,
                "median_us": t.median,
                "splits": t.jobs,
                "caller_us": t.caller,
                "workers_us": t.workers,
            })
        })
        .collect();
    serde_json::json!({ "model": name, "runs": runs, "steps": steps })
}
