//! The `parallel` feature: a batch split over threads gives exactly the sequential
//! results. Run with `cargo test --features parallel --test parallel`.
#![cfg(feature = "parallel")]

mod support;

use cnn::{cnn_model, Model};
use support::{random_input, random_weights};

/// The thread count is global: the tests take turns.
static THREADS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn threads_lock() -> std::sync::MutexGuard<'static, ()> {
    THREADS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `M` with weights of seed `weights` on `inputs` inputs (seeds from `first`) on
/// one thread, then on two, where it must run as a team, and asserts the same bits.
fn assert_team_equals_one_thread<M: Model>(weights: u64, first: u64, inputs: u64) {
    let model = M::from_safetensors(&random_weights::<M>(weights)).unwrap();
    for seed in first..first + inputs {
        let x = random_input::<M>(seed);
        cnn::set_num_threads(1);
        let want = model.forward_flat(&x).unwrap();
        cnn::set_num_threads(2);
        let before = cnn::__private::rt::team::calls();
        let got = model.forward_flat(&x).unwrap();
        assert!(cnn::__private::rt::team::calls() > before, "the team ran");
        assert_eq!(got, want, "input {seed}");
    }
    cnn::set_num_threads(1);
}

cnn_model! {
    /// MobileNet-style depthwise-separable net.
    #[file = "models/mobilenet_96.toml"]
    pub struct MobileNet96;
}

#[test]
fn parallel_batches_equal_sequential_results() {
    let _turn = threads_lock();
    let model = MobileNet96::from_safetensors(&random_weights::<MobileNet96>(1)).unwrap();
    // The reference: one image at a time, on this thread only.
    cnn::set_num_threads(1);
    for (threads, n) in [(2, 1usize), (2, 2), (2, 3), (2, 7), (3, 7), (1, 3)] {
        let inputs: Vec<f32> = (0..n as u64)
            .flat_map(|i| random_input::<MobileNet96>(100 + i))
            .collect();
        let mut outputs = vec![0.0f32; n * MobileNet96::OUTPUT_LEN];
        cnn::set_num_threads(threads);
        model.forward_batch_into(&inputs, &mut outputs).unwrap();
        cnn::set_num_threads(1);
        for i in 0..n {
            let x = &inputs[i * MobileNet96::INPUT_LEN..(i + 1) * MobileNet96::INPUT_LEN];
            let want = model.forward_flat(x).unwrap();
            assert_eq!(
                &outputs[i * MobileNet96::OUTPUT_LEN..(i + 1) * MobileNet96::OUTPUT_LEN],
                &want[..],
                "batch of {n} on {threads} threads, item {i}"
            );
        }
    }
}

cnn_model! {
    /// A chain of convolutions a team of two threads runs as two half images (`team`),
    /// with the geometry that moves their boundary: odd sizes, strides 2 with and
    /// without padding, a depthwise layer on 5 rows, a dilated layer, a 5x5 one, an
    /// even kernel with `same` padding (one row above, two below), a grouped one.
    #[winograd = false]
    pub struct TeamChain {
        input: [3, 37, 29],
        c1: conv(8, kernel = 3, stride = 2, padding = 1),
        relu,
        c2: conv(8, kernel = 3, padding = 1, groups = 8),
        b2: batch_norm,
        relu6,
        c3: conv(12, kernel = 1),
        c4: conv(12, kernel = 3, padding = 2, dilation = 2),
        tanh,
        c5: conv(16, kernel = 5, padding = 2),
        c6: conv(16, kernel = 3, stride = 2),
        c7: conv(16, kernel = 3, stride = 2, padding = 1, groups = 16),
        c8: conv(24, kernel = 4, padding = same, groups = 4),
        c9: conv(24, kernel = 3),
        global_avg_pool,
        fc: linear(5),
    }
}

#[test]
fn team_chain_equals_one_thread() {
    let _turn = threads_lock();
    assert!(
        TeamChain::summary().contains("two threads:  `c1` to `13` (10 steps"),
        "{}",
        TeamChain::summary()
    );
    let model = TeamChain::from_safetensors(&random_weights::<TeamChain>(3)).unwrap();
    for seed in 0..50u64 {
        let x = random_input::<TeamChain>(300 + seed);
        cnn::set_num_threads(1);
        let want = model.forward_flat(&x).unwrap();
        for threads in [2, 3] {
            cnn::set_num_threads(threads);
            let before = cnn::__private::rt::team::calls();
            let got = model.forward_flat(&x).unwrap();
            let ran = cnn::__private::rt::team::calls() > before;
            assert_eq!(ran, threads == 2, "a team on two threads only");
            assert_eq!(got, want, "input {seed}, {threads} threads");
        }
    }
    cnn::set_num_threads(1);
}

cnn_model! {
    /// A team that computes the whole model: its last step (odd rows, 11) writes the
    /// caller's output.
    pub struct TeamToOutput {
        input: [3, 23, 17],
        c1: conv(32, kernel = 3, padding = 1),
        relu,
        c2: conv(32, kernel = 3, stride = 2),
        relu,
        c3: conv(3, kernel = 1),
    }
}

#[test]
fn team_writing_the_output_equals_one_thread() {
    let _turn = threads_lock();
    assert!(
        TeamToOutput::summary().contains("two threads:  `c1` to `c3` (3 steps, 100% of the MACs)"),
        "{}",
        TeamToOutput::summary()
    );
    let model = TeamToOutput::from_safetensors(&random_weights::<TeamToOutput>(6)).unwrap();
    for seed in 0..30u64 {
        let x = random_input::<TeamToOutput>(600 + seed);
        cnn::set_num_threads(1);
        let want = model.forward_flat(&x).unwrap();
        cnn::set_num_threads(2);
        let before = cnn::__private::rt::team::calls();
        // Into an output that holds another call's values: every value is rewritten.
        let mut got = vec![f32::NAN; TeamToOutput::OUTPUT_LEN];
        model.forward_flat_into(&x, &mut got).unwrap();
        assert!(cnn::__private::rt::team::calls() > before, "the team ran");
        assert_eq!(got, want, "input {seed}");
    }
    cnn::set_num_threads(1);
}

cnn_model! {
    /// A graph a team runs (MobileNetV2's inverted residuals, smaller and odd-sized): a
    /// 1x1 expansion fused with its stride-2 depthwise layer (`expand_depthwise`, 1M
    /// floats of expansion), blocks whose projections add their input (`conv2d_residual`
    /// in rows), a 5x5 depthwise layer, and a block output read by a 1x1 layer and,
    /// two steps later, by a 3x3 layer (its exchange for that later reader) whose fused
    /// add reads the 1x1 branch.
    #[winograd = false]
    pub struct TeamGraph {
        input: [3, 129, 130],
        c1: conv(16, kernel = 3, padding = 1),
        relu6,
        e1: conv(64, kernel = 1),
        relu6,
        d1: conv(64, kernel = 3, stride = 2, padding = 1, groups = 64),
        relu6,
        p1: conv(16, kernel = 1),
        e2: conv(48, kernel = 1),
        relu6,
        d2: conv(48, kernel = 3, padding = 1, groups = 48),
        relu6,
        p2: conv(16, kernel = 1),
        r2: add(p1),
        e3: conv(48, kernel = 1),
        relu,
        d3: conv(48, kernel = 5, padding = 2, groups = 48),
        p3: conv(16, kernel = 1),
        r3: add(r2),
        qc: conv(16, kernel = 1),
        q: relu,
        c4: conv(16, kernel = 3, padding = 1, from = r3),
        r4: add(q),
        relu,
        c5: conv(16, kernel = 3, stride = 2),
        relu,
        global_avg_pool,
        fc: linear(5),
    }
}

#[test]
fn team_on_a_graph_equals_one_thread() {
    let _turn = threads_lock();
    let summary = TeamGraph::summary();
    assert!(
        summary.contains("two threads:  `c1` to `25` (")
            && summary.contains("> depthwise_conv2d")
            && summary.contains("+add"),
        "{summary}"
    );
    assert_team_equals_one_thread::<TeamGraph>(7, 700, 10);
}

cnn_model! {
    /// A skip connection from inside the chain to a step after it (a U-Net's): `a2` is
    /// read by `c3`, a team step, and by the add fused into `c4`, which comes after an
    /// upsampling that ends the chain. The team stops at `c2`, whose tensor the caller
    /// then holds whole.
    #[winograd = false]
    pub struct TeamCut {
        input: [3, 40, 36],
        c1: conv(64, kernel = 3, padding = 1),
        relu,
        c2: conv(16, kernel = 5, padding = 2),
        a2: relu,
        c3: conv(4, kernel = 3, padding = 1),
        max_pool(2),
        upsample(scale = 2),
        c4: conv(16, kernel = 1),
        add(a2),
        global_avg_pool,
        fc: linear(3),
    }
}

#[test]
fn team_cut_before_a_tensor_read_after_it_equals_one_thread() {
    let _turn = threads_lock();
    let summary = TeamCut::summary();
    assert!(
        summary.contains("two threads:  `c1` to `c2` (2 steps"),
        "{summary}"
    );
    assert_team_equals_one_thread::<TeamCut>(8, 800, 10);
}

cnn_model! {
    /// Squeeze-and-excitation blocks in a team (MobileNetV3's and EfficientNet's): the
    /// average pool to `[C, 1, 1]` summed by each member over its rows, the sums
    /// exchanged (`reduce_mean`), the two 1x1 layers on `[C, 1, 1]` run whole by both,
    /// the scale folded into the projection (`conv2d_scaled_rows`, with a residual
    /// `conv2d_scaled_residual_rows`), odd heights; the chain ends before a block whose
    /// scale does not fold (a `mul` of its own).
    #[winograd = false]
    pub struct TeamSqueeze {
        input: [3, 45, 38],
        c1: conv(16, kernel = 3, stride = 2, padding = 1),
        hardswish,
        d1: conv(16, kernel = 3, padding = 1, groups = 16),
        a1: relu,
        s1: adaptive_avg_pool(1),
        f1: conv(8, kernel = 1),
        relu,
        f2: conv(16, kernel = 1),
        g1: hardsigmoid,
        m1: mul(a1, g1),
        p1: conv(16, kernel = 1),
        e2: conv(128, kernel = 1),
        silu,
        d2: conv(128, kernel = 5, padding = 2, groups = 128),
        a2: silu,
        s2: adaptive_avg_pool(1),
        f3: conv(16, kernel = 1),
        silu,
        f4: conv(128, kernel = 1),
        g2: sigmoid,
        m2: mul(a2, g2),
        p2: conv(16, kernel = 1),
        r2: add(p1),
        e3: conv(24, kernel = 1),
        relu,
        d3: conv(24, kernel = 3, stride = 2, padding = 1, groups = 24),
        a3: relu,
        s3: adaptive_avg_pool(1),
        f5: conv(8, kernel = 1),
        relu,
        f6: conv(24, kernel = 1),
        g3: hardsigmoid,
        m3: mul(a3, g3),
        p3: conv(144, kernel = 1),
        global_avg_pool,
        fc: linear(4),
    }
}

#[test]
fn team_with_squeeze_and_excitation_equals_one_thread() {
    let _turn = threads_lock();
    let summary = TeamSqueeze::summary();
    assert!(
        summary.contains("two threads:  `c1` to `d3` (")
            && summary.contains("and 2 pools' sums exchanged")
            && summary.contains("mul > conv2d")
            && summary.contains("mul (in place)"),
        "{summary}"
    );
    assert_team_equals_one_thread::<TeamSqueeze>(9, 900, 10);
}

cnn_model! {
    /// ShuffleNet units in a team (odd map sizes): slices of the shuffled tensor read
    /// where they are (a 1x1 layer on one, a depthwise layer straight on another, whose
    /// rows across the middle the exchange after the shuffle brings), concatenations
    /// read only by the channel shuffle after them (each member shuffles its rows), a
    /// stride-2 unit whose two branches read the whole shuffled tensor, a shuffle of
    /// three groups.
    #[winograd = false]
    pub struct TeamShuffle {
        input: [3, 29, 26],
        stem: conv(12, kernel = 3, stride = 2, padding = 1),
        s: relu,
        maxpool: max_pool(3, stride = 1, padding = 1),
        a1: slice(start = 0, end = 6),
        a2: slice(start = 6, end = 12, from = maxpool),
        conv(6, kernel = 1),
        relu,
        conv(6, kernel = 3, padding = 1, groups = 6),
        conv(6, kernel = 1),
        ab: relu,
        concat(a1, ab),
        u1: channel_shuffle(2),
        b1: slice(start = 0, end = 6),
        b2: slice(start = 6, end = 12, from = u1),
        conv(6, kernel = 3, padding = 1, groups = 6),
        conv(6, kernel = 1),
        bb: relu,
        concat(b1, bb),
        u2: channel_shuffle(3),
        conv(12, kernel = 3, stride = 2, padding = 1, groups = 12),
        l: conv(12, kernel = 1),
        conv(12, kernel = 1, from = u2),
        relu,
        conv(12, kernel = 3, stride = 2, padding = 1, groups = 12),
        conv(12, kernel = 1),
        r: relu,
        concat(l, r),
        channel_shuffle(2),
        c5: conv(32, kernel = 1),
        relu,
        global_avg_pool,
        fc: linear(5),
    }
}

#[test]
fn team_with_channel_shuffles_equals_one_thread() {
    let _turn = threads_lock();
    let summary = TeamShuffle::summary();
    assert!(
        summary.contains("two threads:  `stem` to `30` (")
            && summary.matches("channel_shuffle").count() >= 3,
        "{summary}"
    );
    assert_team_equals_one_thread::<TeamShuffle>(15, 1500, 10);
}

cnn_model! {
    /// Concatenations written in place in a team: DenseNet's blocks (each layer's
    /// standalone batch norm on the growing concatenation, by rows, its 3x3 layer
    /// writing its channels of the block's buffer; the transition's 2x2 average pool)
    /// and SqueezeNet's fire modules (two branches writing their channel ranges, read
    /// by a 3x3 layer across the middle: an exchange after each branch).
    #[winograd = false]
    pub struct TeamConcat {
        input: [3, 27, 22],
        c0: conv(8, kernel = 3, padding = 1),
        x0: relu,
        batch_norm,
        relu,
        conv(12, kernel = 1),
        relu,
        y1: conv(4, kernel = 3, padding = 1),
        k1: concat(x0, y1),
        batch_norm,
        relu,
        conv(12, kernel = 1),
        relu,
        y2: conv(4, kernel = 3, padding = 1),
        k2: concat(x0, y1, y2),
        batch_norm,
        relu,
        conv(8, kernel = 1),
        t: avg_pool(2),
        conv(4, kernel = 1),
        sq: relu,
        e1: conv(8, kernel = 1),
        a1: relu,
        e3: conv(8, kernel = 3, padding = 1, from = sq),
        a3: relu,
        fire: concat(a1, a3),
        conv(8, kernel = 3, padding = 1),
        relu,
        global_avg_pool,
        fc: linear(5),
    }
}

#[test]
fn team_with_concatenations_in_place_equals_one_thread() {
    let _turn = threads_lock();
    let summary = TeamConcat::summary();
    assert!(
        summary.contains("two threads:  `c0` to `27` (")
            && summary.contains("channel_affine")
            && summary.matches("operands written in place").count() == 3,
        "{summary}"
    );
    assert_team_equals_one_thread::<TeamConcat>(16, 1600, 10);
}

cnn_model! {
    /// Pools in a team, each member pooling its rows: ResNet's stem pool (3x3, stride 2,
    /// padding 1), a ceil-mode pool whose last window hangs over the map's odd edge, a
    /// dilated max pool, an average pool dividing by the input cells alone, and a 2x2
    /// average pool ending the chain on a map of odd height.
    #[winograd = false]
    pub struct TeamPools {
        input: [3, 45, 38],
        c1: conv(16, kernel = 3, padding = 1),
        relu,
        p1: max_pool(3, stride = 2, padding = 1),
        c2: conv(16, kernel = 3, padding = 1),
        relu,
        p2: max_pool(2, ceil_mode = true),
        c3: conv(24, kernel = 3, padding = 1),
        relu,
        p3: max_pool(3, stride = 1, dilation = 2),
        c4: conv(16, kernel = 1),
        p4: avg_pool(3, stride = 1, padding = 1, count_include_pad = false),
        c5: conv(16, kernel = 3, padding = 1),
        tanh,
        p5: avg_pool(2),
        global_avg_pool,
        fc: linear(5),
    }
}

cnn_model! {
    /// A ResNet's stem and downsampling blocks in a team: the strided 1x1 downsampling
    /// layers gather the pixels of their rows alone, and the blocks' last layers add
    /// them (residual rows), on maps of odd sizes down to 6 x 5.
    #[winograd = false]
    pub struct TeamDownsample {
        input: [3, 41, 38],
        c1: conv(16, kernel = 7, stride = 2, padding = 3),
        batch_norm,
        relu,
        p1: max_pool(3, stride = 2, padding = 1),
        d1: conv(32, kernel = 1, stride = 2, from = p1),
        bd1: batch_norm,
        c2: conv(32, kernel = 3, stride = 2, padding = 1, from = p1),
        relu,
        c3: conv(32, kernel = 3, padding = 1),
        add(bd1),
        r1: relu,
        d2: conv(48, kernel = 1, stride = 2, from = r1),
        c4: conv(24, kernel = 1, from = r1),
        relu,
        c5: conv(24, kernel = 3, stride = 2, padding = 1),
        relu,
        c6: conv(48, kernel = 1),
        add(d2),
        relu,
        global_avg_pool,
        fc: linear(4),
    }
}

cnn_model! {
    /// Winograd layers in a team, with fused residual adds (ResNet's basic blocks): 14
    /// tile rows of 4 on 56 rows, then, after a stride-2 layer, 7 of 4 on 28 rows, whose
    /// middle tile row both members compute from the rows the exchange before brings.
    /// (On 14 rows, 4 tile rows of 4, a member would compute 3: those end the chain.)
    pub struct TeamWinograd {
        input: [16, 56, 26],
        c1: conv(32, kernel = 3, padding = 1),
        a1: relu,
        c2: conv(32, kernel = 3, padding = 1),
        relu,
        c3: conv(32, kernel = 3, padding = 1),
        add(a1),
        relu,
        c4: conv(64, kernel = 3, stride = 2, padding = 1),
        a4: relu,
        c5: conv(64, kernel = 3, padding = 1),
        relu,
        c6: conv(64, kernel = 3, padding = 1),
        add(a4),
        relu,
        global_avg_pool,
        fc: linear(4),
    }
}

cnn_model! {
    /// LeNet-5: its two convolutions and 2x2 average pools as a team.
    #[file = "models/lenet5.toml"]
    pub struct LeNet5;
}

#[test]
fn team_with_pools_equals_one_thread() {
    let _turn = threads_lock();
    let summary = TeamPools::summary();
    assert!(
        summary.contains("two threads:  `c1` to `14` (11 steps"),
        "{summary}"
    );
    assert_team_equals_one_thread::<TeamPools>(10, 1000, 10);
    assert!(LeNet5::summary().contains("two threads:  `conv1` to `pool2` (4 steps"));
    let summary = TeamDownsample::summary();
    assert!(
        summary.contains("two threads:  `c1` to `19` (10 steps"),
        "{summary}"
    );
    assert_team_equals_one_thread::<TeamDownsample>(13, 1300, 10);
    let summary = TeamWinograd::summary();
    assert!(
        summary.contains("two threads:  `c1` to `14` (7 steps")
            && summary.matches("winograd3x3").count() >= 5
            && summary.contains("+add"),
        "{summary}"
    );
    assert_team_equals_one_thread::<TeamWinograd>(14, 1400, 10);
    assert_team_equals_one_thread::<LeNet5>(11, 1100, 5);
    // Many team calls back to back, each against one thread's output: the members'
    // hand-overs (the first exchange uses the buffer the other published in this call).
    let model = LeNet5::from_safetensors(&random_weights::<LeNet5>(12)).unwrap();
    let x = random_input::<LeNet5>(1200);
    cnn::set_num_threads(1);
    let want = model.forward_flat(&x).unwrap();
    cnn::set_num_threads(2);
    let before = cnn::__private::rt::team::calls();
    for _ in 0..2000 {
        assert_eq!(model.forward_flat(&x).unwrap(), want);
    }
    // (Another test may hold the pool for a moment.)
    assert!(
        cnn::__private::rt::team::calls() > before + 1000,
        "the team ran"
    );
    cnn::set_num_threads(1);
}

cnn_model! {
    /// Winograd layers in the team, with and without their fused max pools.
    #[file = "models/cifar_vgg.toml"]
    pub struct CifarVgg;
}

cnn_model! {
    /// A team whose last step writes the model's output (each member its rows, the
    /// worker's through its own copy), the dilated layer in it.
    #[file = "models/fcn_seg.toml"]
    pub struct FcnSeg;
}

#[test]
fn team_winograd_equals_one_thread() {
    let _turn = threads_lock();
    assert!(
        CifarVgg::summary().contains("two threads:  `conv1` to `21` (7 steps"),
        "{}",
        CifarVgg::summary()
    );
    assert!(
        FcnSeg::summary().contains("two threads:  `enc1` to `head` (4 steps, 100% of the MACs)"),
        "{}",
        FcnSeg::summary()
    );
    let cifar = CifarVgg::from_safetensors(&random_weights::<CifarVgg>(4)).unwrap();
    let fcn = FcnSeg::from_safetensors(&random_weights::<FcnSeg>(5)).unwrap();
    for seed in 0..10u64 {
        let x = random_input::<CifarVgg>(400 + seed);
        let y = random_input::<FcnSeg>(500 + seed);
        cnn::set_num_threads(1);
        let (want_x, want_y) = (
            cifar.forward_flat(&x).unwrap(),
            fcn.forward_flat(&y).unwrap(),
        );
        cnn::set_num_threads(2);
        let before = cnn::__private::rt::team::calls();
        let (got_x, got_y) = (
            cifar.forward_flat(&x).unwrap(),
            fcn.forward_flat(&y).unwrap(),
        );
        assert_eq!(
            cnn::__private::rt::team::calls(),
            before + 2,
            "cifar_vgg and fcn_seg ran as teams"
        );
        assert_eq!(got_x, want_x, "cifar_vgg, input {seed}");
        assert_eq!(got_y, want_y, "fcn_seg, input {seed}");
    }
    cnn::set_num_threads(1);
}

#[test]
fn team_equals_one_thread() {
    let _turn = threads_lock();
    assert_team_equals_one_thread::<MobileNet96>(2, 200, 20);
}
