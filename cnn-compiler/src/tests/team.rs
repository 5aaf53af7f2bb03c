//! The team plan (`plan::team`): where the chain ends, the rows exchanged, and the calls
//! each member makes on its rows.

use super::{compile_toml, repo};
use crate::plan::{Buf, Rows};

fn model(name: &str) -> crate::Compiled {
    let text = std::fs::read_to_string(repo().join("models").join(name)).unwrap();
    compile_toml(&text).unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

/// fcn_seg: the whole model, its last step writing the output; a dilated 3x3 layer
/// reads two rows across the middle, a 3x3 one one, the 1x1 head none.
#[test]
fn fcn_seg_team_ends_with_the_output() {
    let c = model("fcn_seg.toml");
    let team = c.plan.team.as_ref().expect("a team");
    assert_eq!(team.steps, 4);
    assert_eq!(team.share, 100);
    assert_eq!(team.merge_buf, Buf::Output);
    assert_eq!(
        team.merge,
        Some(Rows {
            offset: 0,
            chw: (4, 64, 64)
        })
    );
    let rows: Vec<_> = team
        .exchanges
        .iter()
        .map(|e| (e.after, e.tensor.chw, e.above, e.below))
        .collect();
    assert_eq!(
        rows,
        [(0, (16, 64, 64), 2, 2), (1, (32, 64, 64), 1, 1)],
        "{:?}",
        team.exchanges
    );
    // The buffer holds the merge's rows (8,192 floats), more than an exchange's (16 x 2
    // or 32 x 1 rows of 64).
    assert_eq!(team.halo, 4 * 32 * 64);
    let (calls, _) = crate::codegen::steps(&c.model, &c.shapes, &c.plan);
    assert_eq!(calls.members.len(), 4);
    for (i, call) in calls.members.iter().enumerate() {
        let code = call.to_string();
        assert!(code.contains("_rows ::"), "step {i}: {code}");
        assert!(code.contains("m . rows (64)"), "step {i}: {code}");
        assert!(!calls.steps[i].to_string().contains("_rows"), "step {i}");
    }
}

/// cifar_vgg: Winograd layers with their fused pools in the team; a member's rows of a
/// pooled step are rows of the pooled tensor. The team ends with the global average
/// pool, each member summing its rows (no merge: both hold the means).
#[test]
fn cifar_vgg_team_calls_the_row_forms() {
    let c = model("cifar_vgg.toml");
    let team = c.plan.team.as_ref().expect("a team");
    assert_eq!(team.steps, 7);
    assert_eq!(team.merge_buf, Buf::Arena);
    assert_eq!(team.merge, None);
    assert_eq!(team.parts.last(), Some(&crate::plan::Part::Reduce));
    let (calls, _) = crate::codegen::steps(&c.model, &c.shapes, &c.plan);
    let code: Vec<String> = calls.members.iter().map(|t| t.to_string()).collect();
    let pooled = code
        .iter()
        .filter(|c| c.contains("winograd_conv3x3_maxpool2_rows"))
        .count();
    assert!(pooled >= 2, "{code:#?}");
    assert!(
        code[6].contains("adaptive_avg_pool2d_part ::"),
        "{}",
        code[6]
    );
    for (call, step) in code.iter().zip(&c.plan.steps).take(6) {
        let h = step.output.as_chw().1;
        assert!(call.contains(&format!("m . rows ({h})")), "{call}");
    }
}

/// MobileNetV2 (a graph): the team runs from the stem to the last 1x1 layer, through
/// the fused expansion + depthwise pair and the projections that add their block's
/// input (read twice: by the next expansion and by that add, neither across the
/// boundary). The exchanges come after the steps a depthwise layer reads, and only
/// there.
#[test]
fn mobilenet_v2_team_runs_the_graph() {
    use crate::plan::Kernel;
    let c = model("mobilenet_v2_224.toml");
    let team = c.plan.team.as_ref().expect("a team");
    let name = |s: usize| c.model.layers[c.plan.steps[s].layers[0]].name.clone();
    assert_eq!(
        (name(0).as_str(), name(team.steps - 2).as_str()),
        ("features.0.0", "features.18.0")
    );
    assert_eq!(c.plan.steps[team.steps - 1].kernel, Kernel::GlobalAvg);
    assert_eq!(team.merge_buf, Buf::Arena);
    assert_eq!(team.merge, None);
    let windowed = |s: usize| match c.plan.steps[s].kernel {
        Kernel::Conv { depthwise, .. } => depthwise,
        Kernel::ExpandDepthwise { .. } => true,
        _ => false,
    };
    assert_eq!(team.exchanges.len(), 17);
    for e in &team.exchanges {
        assert!(windowed(e.after + 1), "{e:?}");
        // One row each way at stride 1; at stride 2 one or two rows above (14 -> 7:
        // member 1's first output row, 3, reads rows 5..8), none below.
        assert!(
            e.above + e.below > 0 && e.above <= 2 && e.below <= 1,
            "{e:?}"
        );
    }
    let (calls, _) = crate::codegen::steps(&c.model, &c.shapes, &c.plan);
    let code: Vec<String> = calls.members.iter().map(|t| t.to_string()).collect();
    let count = |f: &str| code.iter().filter(|c| c.contains(f)).count();
    assert_eq!(count("conv2d_residual_rows ::"), 10, "{code:#?}");
    assert_eq!(count("expand_depthwise_rows ::"), 1, "{code:#?}");
    assert_eq!(count("adaptive_avg_pool2d_part ::"), 1, "{code:#?}");
    for (call, step) in code.iter().zip(&c.plan.steps).take(team.steps - 1) {
        let h = step.output.as_chw().1;
        assert!(call.contains(&format!("m . rows ({h})")), "{call}");
    }
}

/// MobileNetV3-Large: squeeze-and-excitation blocks in the team. Each pool to `[C, 1,
/// 1]` is a reduction (each member sums its rows: `adaptive_avg_pool2d_part`, then the
/// sums are exchanged), the two 1x1 layers on its output run whole on both members (the
/// usual calls), the projection with the scale folded in by rows; the chain ends before
/// the first block whose scale does not fold (its `mul` is not a team step), with a step
/// by rows.
#[test]
fn mobilenet_v3_large_team_runs_squeeze_and_excitation() {
    use crate::plan::Part;
    let c = model("mobilenet_v3_large_224.toml");
    let team = c.plan.team.as_ref().expect("a team");
    let name = |s: usize| c.model.layers[c.plan.steps[s].layers[0]].name.clone();
    assert_eq!(name(team.steps - 1), "features.13.block.1.0");
    assert_eq!(team.parts.len(), team.steps);
    assert_eq!(team.parts.last(), Some(&Part::Rows));
    let count = |p: Part| team.parts.iter().filter(|&&q| q == p).count();
    // Blocks 4, 5, 6, 11 and 12 have their squeeze-and-excitation in the chain (13's
    // pool comes after its end).
    assert_eq!((count(Part::Reduce), count(Part::Whole)), (5, 10));
    assert_eq!(team.reduces.len(), 5);
    for r in &team.reduces {
        assert_eq!(team.parts[r.after], Part::Reduce);
        assert_eq!(c.plan.steps[r.after].output.as_chw(), (r.c, 1, 1));
        assert!(team.halo >= r.c);
    }
    let (calls, _) = crate::codegen::steps(&c.model, &c.shapes, &c.plan);
    for (i, (member, part)) in calls.members.iter().zip(&team.parts).enumerate() {
        let code = member.to_string();
        match part {
            Part::Whole => assert_eq!(code, calls.steps[i].to_string(), "step {i}"),
            Part::Reduce => assert!(code.contains("adaptive_avg_pool2d_part ::"), "{code}"),
            Part::Rows => assert!(code.contains("_rows ::"), "step {i}: {code}"),
        }
    }
    let scaled = calls
        .members
        .iter()
        .filter(|m| m.to_string().contains("conv2d_scaled"))
        .count();
    assert_eq!(scaled, 5);
}

/// ShuffleNetV2: the team runs from the stem to the global average pool, through every
/// unit's channel shuffle (each member shuffles its rows of every plane) and the
/// slices of the shuffled tensor (views: read by rows like the tensor they are part
/// of), and ends with the pool's sums exchanged: no merge. No shuffle or slice reader
/// needs rows of the other half: the exchanges come before the windowed layers alone.
#[test]
fn shufflenet_v2_team_runs_the_shuffles_and_slices() {
    use crate::plan::Kernel;
    let c = model("shufflenet_v2_x1_0_224.toml");
    let team = c.plan.team.as_ref().expect("a team");
    let name = |s: usize| c.model.layers[c.plan.steps[s].layers[0]].name.clone();
    assert_eq!(name(0), "conv1.0");
    assert_eq!(c.plan.steps[team.steps - 1].kernel, Kernel::GlobalAvg);
    assert_eq!(team.merge, None);
    assert_eq!(team.reduces.len(), 1);
    assert_eq!((team.reduces[0].c, team.reduces[0].hw), (1024, 49));
    let shuffles = (0..team.steps)
        .filter(|&s| matches!(c.plan.steps[s].kernel, Kernel::ChannelShuffle { .. }))
        .count();
    assert_eq!(shuffles, 16);
    for e in &team.exchanges {
        let reader = &c.plan.steps[e.after + 1];
        let windowed = match reader.kernel {
            Kernel::Conv { depthwise, .. } => depthwise,
            Kernel::ExpandDepthwise { .. } | Kernel::Pool { .. } => true,
            _ => false,
        };
        // (A stride-2 unit's branch1 depthwise layer reads the shuffle two steps on.)
        let later = matches!(c.plan.steps[e.after].kernel, Kernel::ChannelShuffle { .. });
        assert!(windowed || later, "{e:?}");
    }
    let (calls, _) = crate::codegen::steps(&c.model, &c.shapes, &c.plan);
    let code: Vec<String> = calls.members.iter().map(|t| t.to_string()).collect();
    let count = |f: &str| code.iter().filter(|c| c.contains(f)).count();
    assert_eq!(count("concat_channel_shuffle_rows ::"), 16, "{code:#?}");
    assert_eq!(count("adaptive_avg_pool2d_part ::"), 1, "{code:#?}");
    for (call, step) in code.iter().zip(&c.plan.steps).take(team.steps - 1) {
        let h = step.output.as_chw().1;
        assert!(call.contains(&format!("m . rows ({h})")), "{call}");
    }
}

/// A global average pool that is the model's output is no reduction of the team (the
/// sums are exchanged in the arena): the chain ends before it, with the last tensor
/// handed over (the two-thread conformance run of this case failed without this rule).
#[test]
fn a_pool_writing_the_output_ends_no_team() {
    let path = repo().join("tests/exported/global_pool_last/model.toml");
    let c = compile_toml(&std::fs::read_to_string(path).unwrap()).unwrap();
    let team = c.plan.team.as_ref().expect("a team: the two convolutions");
    assert_eq!(team.steps, 2);
    assert_eq!(c.plan.steps[team.steps - 1].dst.buf, Buf::Arena);
    assert!(team.merge.is_some(), "{team:?}");
    assert!(team.reduces.is_empty(), "{team:?}");
}

/// DenseNet-121: its first two blocks and transitions run as a team. Each layer's batch
/// norm on the block's concatenation runs by rows (`channel_affine_into_rows`), the
/// concatenation written in place by the block input's step and each layer's 3x3
/// layer: a reader of it has all those steps as producers, and the exchange before a
/// 3x3 reader follows each of them. The chain ends before block 3's first 3x3 layer
/// (14x14, Winograd F(4x4): 4 tile rows, one member would compute 3).
#[test]
fn densenet_team_reads_concatenations_written_in_place() {
    use crate::plan::Kernel;
    let c = model("densenet121_224.toml");
    let team = c.plan.team.as_ref().expect("a team");
    let name = |s: usize| c.model.layers[c.plan.steps[s].layers[0]].name.clone();
    assert_eq!(name(team.steps - 1), "features.transition2.pool");
    assert_eq!(
        name(team.steps),
        "features.denseblock3.denselayer1.norm1",
        "the chain ends where block 3 starts"
    );
    let next3x3 = (team.steps..c.plan.steps.len())
        .find(|&s| {
            matches!(
                c.plan.steps[s].kernel,
                Kernel::Conv {
                    winograd: Some(_),
                    ..
                }
            )
        })
        .unwrap();
    assert_eq!(c.plan.steps[next3x3].output.as_chw(), (32, 14, 14));
    let (calls, _) = crate::codegen::steps(&c.model, &c.shapes, &c.plan);
    let code: Vec<String> = calls.members.iter().map(|t| t.to_string()).collect();
    let affines = code
        .iter()
        .filter(|c| c.contains("channel_affine_into_rows ::"))
        .count();
    // Every dense layer's norm1 in blocks 1 and 2 (6 + 12) and the transitions' norms.
    assert!(affines >= 18, "{affines}");
    assert!(team.merge.is_some());
}
