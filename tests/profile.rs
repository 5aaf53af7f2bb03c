//! `Model::STEPS` (always generated) and, with the `profile` feature, the per-step times
//! of a forward pass (`cnn::profile::last_steps`). Run the timed half with
//! `cargo test --features profile --test profile`.

mod support;

use cnn::{cnn_model, Model};

cnn_model! {
    /// A residual block, a fused expansion + stride-2 depthwise pair and a head: steps
    /// of several kinds (conv, fused pair, in-place add, pooling, linear).
    pub struct Steps {
        input: [8, 128, 128],
        stem: conv(16, kernel = 3, padding = 1),
        r: relu,
        a: conv(16, kernel = 3, padding = 1),
        add(a, r),
        e: conv(64, kernel = 1, bias = false),
        e_bn: batch_norm,
        relu6,
        d: conv(64, kernel = 3, stride = 2, padding = 1, groups = 64),
        d_bn: batch_norm,
        relu6,
        global_avg_pool,
        fc: linear(10),
    }
}

/// One entry per kernel call, in order, with the layers' names, the summary's kernel
/// names and every multiply-accumulate of the model.
#[test]
fn steps_list_the_kernel_calls_of_the_forward_pass() {
    let steps = Steps::STEPS;
    let layers: Vec<&str> = steps.iter().map(|s| s.layer).collect();
    assert_eq!(layers.first(), Some(&"stem"), "{steps:#?}");
    assert_eq!(layers.last(), Some(&"fc"), "{steps:#?}");
    // Layer order is kept.
    let at = |name: &str| layers.iter().position(|l| *l == name);
    assert!(at("stem") < at("a") && at("a") < at("e") && at("e") < at("fc"));
    // The fused pair is one step (named after its first layer), `d` has none of its own.
    assert_eq!(at("d"), None, "{steps:#?}");
    let e = &steps[at("e").unwrap()];
    assert!(e.kernel.contains("> depthwise_conv2d"), "{e:?}");
    // The kernels are the summary's, and the MACs add up to the model's.
    let summary = Steps::summary();
    for s in steps {
        assert!(summary.contains(s.kernel), "{} not in\n{summary}", s.kernel);
    }
    assert_eq!(steps.iter().map(|s| s.macs).sum::<usize>(), Steps::MACS);
    let calls = steps.iter().filter(|s| s.kernel != "copy").count();
    assert!(
        summary.contains(&format!("forward:      {calls} kernel calls")),
        "{calls} calls\n{summary}"
    );
}

/// With `profile`, each forward pass records one time per step, on its thread, and the
/// steps' times add up to no more than the pass took.
#[cfg(feature = "profile")]
#[test]
fn a_forward_pass_records_one_time_per_step() {
    use std::time::Instant;
    use support::{random_input, random_weights};
    let model = Steps::from_safetensors(&random_weights::<Steps>(3)).unwrap();
    let x = random_input::<Steps>(4);
    let mut y = vec![0.0; Steps::OUTPUT_LEN];
    for _ in 0..3 {
        let t0 = Instant::now();
        model.forward_flat_into(&x, &mut y).unwrap();
        let wall = t0.elapsed();
        let times = cnn::profile::last_steps();
        assert_eq!(times.len(), Steps::STEPS.len());
        let sum: std::time::Duration = times.iter().sum();
        assert!(sum <= wall, "steps {sum:?} > pass {wall:?}");
        assert!(sum > std::time::Duration::ZERO);
        // The split calls' work, one entry per step: the caller's parts run inside the
        // step (none without `parallel`).
        let work = cnn::profile::last_step_work();
        assert_eq!(work.len(), Steps::STEPS.len());
        for (w, t) in work.iter().zip(&times) {
            assert!(w.caller <= *t, "caller {:?} > step {t:?}", w.caller);
            if !cfg!(feature = "parallel") || cnn::num_threads() == 1 {
                assert_eq!(*w, cnn::profile::StepWork::default());
            }
        }
    }
    // Another thread's passes do not touch this thread's times.
    std::thread::scope(|s| {
        s.spawn(|| assert!(cnn::profile::last_steps().is_empty()));
    });
    assert_eq!(cnn::profile::last_steps().len(), Steps::STEPS.len());
}

cnn_model! {
    /// Three convolutions and the global pool that two threads run as a team
    /// (`summary()`'s `two threads:` line), then the classifier on the split plan.
    pub struct TeamSteps {
        input: [3, 64, 64],
        c1: conv(32, kernel = 3, padding = 1),
        relu,
        c2: conv(32, kernel = 3, padding = 1),
        relu,
        c3: conv(32, kernel = 3, stride = 2, padding = 1),
        relu,
        global_avg_pool,
        fc: linear(10),
    }
}

/// With `profile` and `parallel` on two threads, a team's steps are timed one by one on
/// the calling thread, and no split-call work of the team is charged to any step (the
/// worker's time spans the whole chain).
#[cfg(all(feature = "profile", feature = "parallel"))]
#[test]
fn a_team_records_its_steps_on_the_calling_thread() {
    use support::{random_input, random_weights};
    assert!(
        TeamSteps::summary().contains("two threads:  `c1` to `6` (4 steps"),
        "{}",
        TeamSteps::summary()
    );
    let model = TeamSteps::from_safetensors(&random_weights::<TeamSteps>(5)).unwrap();
    let x = random_input::<TeamSteps>(6);
    let mut y = vec![0.0; TeamSteps::OUTPUT_LEN];
    let before = cnn::__private::rt::team::calls();
    cnn::set_num_threads(2);
    // Another test may hold the pool: then the pass runs without a team.
    for _ in 0..200 {
        model.forward_flat_into(&x, &mut y).unwrap();
        if cnn::__private::rt::team::calls() > before {
            break;
        }
    }
    let teams = cnn::__private::rt::team::calls() - before;
    let (times, work) = (cnn::profile::last_steps(), cnn::profile::last_step_work());
    assert_eq!(times.len(), TeamSteps::STEPS.len());
    assert_eq!(work.len(), TeamSteps::STEPS.len());
    if teams > 0 {
        // The last pass formed a team (the loop stops after the first that does).
        for (i, (w, t)) in work.iter().zip(&times).enumerate() {
            assert!(
                w.caller <= *t,
                "step {i}: caller {:?} > step {t:?}",
                w.caller
            );
            if i < 4 {
                assert_eq!(*w, cnn::profile::StepWork::default(), "team step {i}");
            }
        }
    }
}
