//! `slice` as a view at an offset of its input's memory, and `channel_shuffle` as a
//! step: where the view may be written over, and where a copy is needed instead. The
//! values are checked against PyTorch by the conformance cases `graph_slice_*` and
//! `shuffle_*`.

use super::*;
use crate::plan::{Buf, Kernel, Region, Step};

fn compile(text: &str) -> Compiled {
    compile_toml(text).unwrap_or_else(|d| panic!("compiles: {d:?}"))
}

fn errors(text: &str) -> String {
    match compile_toml(text) {
        Ok(_) => panic!("should not compile"),
        Err(d) => d
            .iter()
            .map(|d| d.msg.clone())
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn step_of<'a>(c: &'a Compiled, name: &str) -> &'a Step {
    let i = c
        .model
        .layers
        .iter()
        .position(|l| l.name == name)
        .unwrap_or_else(|| panic!("no layer `{name}`"));
    c.plan
        .steps
        .iter()
        .find(|s| s.layers.contains(&i))
        .unwrap_or_else(|| panic!("no step for `{name}`"))
}

/// ShuffleNet's unit: half the channels pass, the other half through a branch, the
/// halves concatenated and shuffled. The slices emit nothing: the branch reads its half
/// where `stem` wrote it.
#[test]
fn slices_are_views_and_shuffle_is_a_step() {
    let c = compile(
        r#"
input = [3, 8, 8]
[[layers]]
name = "stem"
op = "conv"
out = 8
kernel = 3
padding = 1
[[layers]]
name = "a"
op = "slice"
start = 0
end = 4
from = "stem"
[[layers]]
name = "b"
op = "slice"
start = 4
end = 8
from = "stem"
[[layers]]
name = "branch"
op = "conv"
out = 4
kernel = 1
[[layers]]
name = "cat"
op = "concat"
from = ["a", "branch"]
[[layers]]
name = "shuffle"
op = "channel_shuffle"
groups = 2
"#,
    );
    let stem = step_of(&c, "stem").dst;
    let branch = step_of(&c, "branch");
    assert_eq!(
        branch.srcs[0],
        Region {
            buf: stem.buf,
            offset: stem.offset + 4 * 64
        }
    );
    assert_eq!(branch.inputs[0], crate::ir::Shape::Chw(4, 8, 8));
    // The concat is never stored: the shuffle reads `a` (in `stem`) and `branch`.
    let shuffle = step_of(&c, "shuffle");
    assert_eq!(shuffle.kernel, Kernel::ChannelShuffle { groups: 2 });
    assert_eq!(shuffle.srcs, [stem, branch.dst]);
    assert_eq!(shuffle.dst.buf, Buf::Output);
    assert_eq!(c.plan.steps.len(), 3, "{:#?}", c.plan.steps);
    let summary = crate::summary::render("M", &c.model, &c.shapes, &c.plan, 0);
    assert!(
        summary.contains("(no copy: a view of its input)"),
        "{summary}"
    );
    assert!(summary.contains("concat+channel_shuffle"), "{summary}");
    assert!(summary.contains("(fused into `cat`)"), "{summary}");
    let code = crate::codegen::steps(&c.model, &c.shapes, &c.plan).0.steps[2].to_string();
    assert!(code.contains("concat_channel_shuffle"), "{code}");
}

/// A concat read by something besides its shuffle is stored as usual.
#[test]
fn a_concat_read_elsewhere_is_stored() {
    let c = compile(
        r#"
input = [4, 4, 4]
[[layers]]
name = "a"
op = "conv"
out = 4
kernel = 1
[[layers]]
name = "cat"
op = "concat"
from = ["a", "input"]
[[layers]]
name = "shuffle"
op = "channel_shuffle"
groups = 4
[[layers]]
name = "sum"
op = "add"
from = ["shuffle", "cat"]
"#,
    );
    let shuffle = step_of(&c, "shuffle");
    assert_eq!(shuffle.srcs.len(), 1);
    assert_eq!(shuffle.layers.len(), 1);
}

/// A slice of the caller's input is read there, never written over: the activation
/// after it writes fresh memory.
#[test]
fn a_slice_of_the_input_is_never_written() {
    let c = compile(
        r#"
input = [6, 4, 4]
[[layers]]
name = "s"
op = "slice"
start = 2
end = 5
[[layers]]
name = "act"
op = "relu"
[[layers]]
name = "conv"
op = "conv"
out = 2
kernel = 1
"#,
    );
    let act = step_of(&c, "act");
    assert_eq!(
        act.srcs[0],
        Region {
            buf: Buf::Input,
            offset: 2 * 16
        }
    );
    assert_eq!(act.dst.buf, Buf::Arena);
}

/// An activation over a slice whose source is read later writes fresh memory; over a
/// slice whose source is dead it runs in place, inside the source's memory.
#[test]
fn in_place_over_a_slice_only_when_its_source_is_dead() {
    let model = |late: &str| {
        format!(
            r#"
input = [2, 4, 4]
[[layers]]
name = "c"
op = "conv"
out = 6
kernel = 1
[[layers]]
name = "s"
op = "slice"
start = 3
end = 6
[[layers]]
name = "act"
op = "relu"
[[layers]]
name = "tail"
op = "conv"
out = 6
kernel = 1
[[layers]]
name = "sum"
op = "add"
from = ["tail", "{late}"]
"#
        )
    };
    let c = compile(&model("c"));
    let (src, act) = (step_of(&c, "c").dst, step_of(&c, "act"));
    assert_eq!(act.srcs[0].offset, src.offset + 3 * 16);
    let (d, n) = (act.dst.offset, act.output.len());
    assert!(
        act.dst.buf != src.buf || d + n <= src.offset || src.offset + 6 * 16 <= d,
        "act writes over `c`, which `sum` reads: {act:?}"
    );
    let c = compile(&model("tail"));
    let (src, act) = (step_of(&c, "c").dst, step_of(&c, "act"));
    assert_eq!(act.dst, act.srcs[0], "in place");
    assert_eq!(act.dst.offset, src.offset + 3 * 16);
}

/// A slice that is the output, or a flattened vector's features, is copied out: the
/// caller's output holds exactly the slice.
#[test]
fn a_slice_at_the_end_is_copied_out() {
    let c = compile(
        r#"
input = [4, 3, 3]
[[layers]]
name = "c"
op = "conv"
out = 4
kernel = 1
[[layers]]
op = "flatten"
[[layers]]
name = "s"
op = "slice"
start = 9
end = 30
"#,
    );
    let s = step_of(&c, "s");
    assert_eq!(s.kernel, Kernel::Copy);
    assert_eq!(s.srcs[0].offset, step_of(&c, "c").dst.offset + 9);
    assert_eq!(
        s.dst,
        Region {
            buf: Buf::Output,
            offset: 0
        }
    );
    assert_eq!(s.output.len(), 21);
}

#[test]
fn slice_and_shuffle_errors_name_the_numbers() {
    let base = "input = [6, 4, 4]\n[[layers]]\nname = \"x\"\n";
    let e = errors(&format!("{base}op = \"slice\"\nstart = 2\nend = 9\n"));
    assert!(
        e.contains("layer `x` (slice): end = 9 is beyond the input's 6 channels"),
        "{e}"
    );
    let e = errors(&format!("{base}op = \"slice\"\nstart = 3\nend = 3\n"));
    assert!(e.contains("end = 3 must be greater than start = 3"), "{e}");
    let e = errors(&format!("{base}op = \"slice\"\nstart = -1\nend = 3\n"));
    assert!(e.contains("start = -1 is negative"), "{e}");
    let e = errors(&format!("{base}op = \"slice\"\nend = 3\n"));
    assert!(e.contains("start"), "{e}");
    let e = errors(&format!("{base}op = \"channel_shuffle\"\ngroups = 4\n"));
    assert!(
        e.contains("layer `x` (channel_shuffle): groups = 4 does not divide the 6 input channels"),
        "{e}"
    );
    let e = errors(&format!("{base}op = \"channel_shuffle\"\ngroups = 0\n"));
    assert!(
        e.contains("groups = 0, but groups must be at least 1"),
        "{e}"
    );
    let e = errors("input = [6]\n[[layers]]\nname = \"x\"\nop = \"channel_shuffle\"\ngroups = 2\n");
    assert!(
        e.contains("needs a [C, H, W] input but gets the vector [6]"),
        "{e}"
    );
}
