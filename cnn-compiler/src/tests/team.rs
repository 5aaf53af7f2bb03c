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
        Rows {
            offset: 0,
            chw: (4, 64, 64)
        }
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
/// pooled step are rows of the pooled tensor.
#[test]
fn cifar_vgg_team_calls_the_row_forms() {
    let c = model("cifar_vgg.toml");
    let team = c.plan.team.as_ref().expect("a team");
    assert_eq!(team.steps, 6);
    assert_eq!(team.merge_buf, Buf::Arena);
    let (calls, _) = crate::codegen::steps(&c.model, &c.shapes, &c.plan);
    let code: Vec<String> = calls.members.iter().map(|t| t.to_string()).collect();
    let pooled = code
        .iter()
        .filter(|c| c.contains("winograd_conv3x3_maxpool2_rows"))
        .count();
    assert!(pooled >= 2, "{code:#?}");
    for (call, step) in code.iter().zip(&c.plan.steps) {
        let h = step.output.as_chw().1;
        assert!(call.contains(&format!("m . rows ({h})")), "{call}");
    }
}
