//! The serve mode of `benches/models.rs` (`--serve MODEL..`).
//!
//! The bench loads, checks and warms up the requested models (a 0.3 s
//! block each), then answers commands read from stdin, one per line, each with exactly
//! one JSON line on stdout (flushed); everything else it prints goes to stderr, so stdout
//! is pure JSON lines. `tools/bench/compare.py` drives it to alternate `cnn` with ONNX
//! Runtime and OpenVINO in short blocks:
//!
//! - `info`: what `--json` writes, without the times: version, SIMD level, threads,
//!   batch, and per model its shapes, MACs, parameters, weights and output check (and
//!   `errors`: the models that failed to load);
//! - `time MODEL SECONDS`: one block: a warm-up (at least 2 runs and 10 ms), then runs
//!   each timed alone until SECONDS have passed (at least 5); answers `model`, `runs`,
//!   `median_us`, `p10_us`, `p90_us`, `min_us`, `mean_us` (quantiles by linear
//!   interpolation between order statistics, as `--json`'s);
//! - `profile MODEL SECONDS` (built with `--features profile`): per-step medians of
//!   batch-1 forward passes for about SECONDS; answers `model`, `runs` and `steps` (each
//!   step's `layer`, `kernel`, `macs`, `median_us`, and its split kernel calls `splits`
//!   with the calling thread's and the workers' part time `caller_us`, `workers_us`, in
//!   the order of `Model::STEPS`);
//! - `quit` (or the end of stdin): answers `{"quit": true}` and exits with status 0.
//!
//! A bad command is answered with `{"error": "..."}`.

use std::io::{BufRead, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::{meta_json, results_json, steps, times_json, Bench};

/// One block of the serve mode: a warm-up of at least 2 runs and 10 ms (the model was
/// warmed when loaded, but another engine may have run since), then single runs, each
/// timed alone, until `secs` have passed (at least 5 runs). Returns the sorted samples
/// in seconds. `tools/bench/compare.py` times ONNX Runtime and OpenVINO the same way.
pub fn time_block(secs: f64, mut run: impl FnMut()) -> Vec<f64> {
    let warm = Instant::now();
    let mut warm_runs = 0usize;
    while warm_runs < 2 || warm.elapsed() < Duration::from_millis(10) {
        run();
        warm_runs += 1;
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 5 || start.elapsed().as_secs_f64() < secs {
        let t0 = Instant::now();
        run();
        samples.push(t0.elapsed().as_secs_f64());
    }
    samples.sort_by(f64::total_cmp);
    samples
}

/// Longest block `time MODEL SECONDS` accepts in the serve mode.
const MAX_BLOCK_SECS: f64 = 60.0;

/// The answer of the serve mode to one command line (`None`: quit).
fn serve_answer(
    line: &str,
    benches: &mut [Box<dyn Bench>],
    errors: &[(&str, String)],
    batch: usize,
) -> Option<serde_json::Value> {
    let error = |msg: String| Some(serde_json::json!({ "error": msg }));
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["quit"] => None,
        ["info"] => {
            let models = benches.iter().map(|b| meta_json(b.meta()).into()).collect();
            let mut info = results_json(
                batch,
                "serve: per `time` command a warm-up (>= 2 runs and 10 ms), then runs \
                 each timed alone for about SECONDS (>= 5 runs); quantiles by linear \
                 interpolation",
                models,
            );
            info["errors"] = errors
                .iter()
                .map(|(model, e)| serde_json::json!({ "model": model, "error": e }))
                .collect();
            Some(info)
        }
        [cmd @ ("time" | "profile"), model, secs] => {
            let loaded: Vec<&str> = benches.iter().map(|b| b.meta().name).collect();
            let Some(b) = benches.iter_mut().find(|b| b.meta().name == *model) else {
                return error(match errors.iter().find(|(m, _)| m == model) {
                    Some((_, e)) => format!("{model} failed to load: {e}"),
                    None => format!("`{model}` is not loaded (loaded: {})", loaded.join(", ")),
                });
            };
            let secs = match secs.parse::<f64>() {
                Ok(s) if s.is_finite() && s > 0.0 && s <= MAX_BLOCK_SECS => s,
                _ => {
                    return error(format!(
                        "`{secs}` is not a number of seconds in (0, {MAX_BLOCK_SECS}]"
                    ))
                }
            };
            if *cmd == "profile" {
                return match b.profile(secs) {
                    Ok((medians, runs)) => {
                        Some(steps::json(b.meta().name, b.steps(), &medians, runs))
                    }
                    Err(e) => error(e),
                };
            }
            let samples = b.time_block(secs);
            let mut answer = times_json(&samples);
            answer.insert("model".into(), b.meta().name.into());
            Some(answer.into())
        }
        [] => error("empty command".into()),
        ["time" | "profile", ..] => error(format!("usage: {} MODEL SECONDS", words[0])),
        [cmd, ..] => error(format!(
            "unknown command `{cmd}` (commands: info, time MODEL SECONDS, \
             profile MODEL SECONDS, quit)"
        )),
    }
}

/// The serve mode: warms the models up, then answers stdin's commands on stdout.
pub fn serve(
    mut benches: Vec<Box<dyn Bench>>,
    errors: &[(&str, String)],
    batch: usize,
) -> ExitCode {
    for b in &mut benches {
        b.time_block(0.3);
    }
    eprintln!(
        "serving: info | time MODEL SECONDS | profile MODEL SECONDS | quit, one per line on stdin"
    );
    let mut out = std::io::stdout().lock();
    let mut lines = std::io::stdin().lock().lines();
    loop {
        let answer = match lines.next() {
            Some(Ok(line)) => serve_answer(&line, &mut benches, errors, batch),
            Some(Err(e)) => {
                eprintln!("error: reading stdin: {e}");
                return ExitCode::FAILURE;
            }
            None => None,
        };
        let quit = answer.is_none();
        let answer = answer.unwrap_or_else(|| serde_json::json!({ "quit": true }));
        let written = writeln!(out, "{answer}").and_then(|()| out.flush());
        if written.is_err() {
            // The reader has gone: nobody to answer.
            return ExitCode::FAILURE;
        }
        if quit {
            return ExitCode::SUCCESS;
        }
    }
}
