//! Concatenations in memory: operands written straight into their channel range, and
//! concat chains (DenseNet's blocks) sharing one buffer whose prefixes are the chain's
//! concats. The values themselves are checked against PyTorch by the conformance cases
//! of the same names (`tests/cases/graph_dense_chain_*`).

use super::*;
use crate::plan::{Buf, Kernel, Region, Step};

fn case(name: &str) -> Compiled {
    let path = repo().join("tests/cases").join(name).join("model.toml");
    let text = std::fs::read_to_string(&path).expect("case exists");
    compile_toml(&text).expect("compiles")
}

/// The layer index of `name`.
fn layer(c: &Compiled, name: &str) -> usize {
    c.model
        .layers
        .iter()
        .position(|l| l.name == name)
        .unwrap_or_else(|| panic!("no layer `{name}`"))
}

/// The step that covers layer `name`.
fn step_of<'a>(c: &'a Compiled, name: &str) -> &'a Step {
    let i = layer(c, name);
    c.plan
        .steps
        .iter()
        .find(|s| s.layers.contains(&i))
        .unwrap_or_else(|| panic!("no step for `{name}`"))
}

fn copies(c: &Compiled) -> Vec<&Step> {
    c.plan
        .steps
        .iter()
        .filter(|s| s.kernel == Kernel::Copy)
        .collect()
}

/// A dense block whose input is a convolution's output: every operand is written once,
/// at its channel offset of the last concat's buffer, and no concat copies anything.
/// The activations reading concats that are still needed (an extended one, or the last
/// one while an earlier one is read again later) write fresh memory, not in place.
#[test]
fn dense_chains_write_every_operand_once() {
    let c = case("graph_dense_chain_in_place");
    assert!(copies(&c).is_empty(), "{:#?}", copies(&c));
    let plane = 6 * 6;
    let base = step_of(&c, "s").dst;
    assert_eq!(base.buf, Buf::Arena);
    for (name, channel) in [("d1.conv", 4), ("d2.conv", 7), ("d3.conv", 10)] {
        assert_eq!(
            step_of(&c, name).dst,
            Region {
                buf: Buf::Arena,
                offset: base.offset + channel * plane
            },
            "{name}"
        );
    }
    for cat in ["cat1", "cat2", "cat3"] {
        assert!(c.plan.free_concats.contains(&layer(&c, cat)), "{cat}");
    }
    // `d2.relu` reads cat1 (extended by cat2), `act3` reads cat3 while `late` still
    // reads cat1, which cat3's memory holds.
    for name in ["d2.relu", "act3"] {
        let s = step_of(&c, name);
        assert_eq!(s.kernel, Kernel::Activation, "{name}");
        assert_eq!(s.srcs[0], base, "{name}");
        let (d, n) = (s.dst.offset, s.output.len());
        assert!(
            s.dst.buf != base.buf || d + n <= base.offset || base.offset + 12 * plane <= d,
            "{name} writes over the chain's buffer: {s:?}"
        );
    }
    // `late` reads cat1: the buffer's first 7 channels.
    assert_eq!(step_of(&c, "late").srcs[0], base);
}

/// A chain whose first concat's operands are read outside it is copied into (once, by
/// that concat), then extended in place by the model's last layer: the operands land
/// in the caller's output, and the relu reading the first concat does not run in place.
/// A concat of the same operands in another order copies them.
#[test]
fn dense_chains_copy_operands_read_elsewhere() {
    let c = case("graph_dense_chain_output");
    let plane = 5 * 5;
    let at = |offset: usize| Region {
        buf: Buf::Output,
        offset,
    };
    let c1 = layer(&c, "c1");
    let c1_copies: Vec<Region> = copies(&c)
        .iter()
        .filter(|s| s.layers == [c1])
        .map(|s| s.dst)
        .collect();
    assert_eq!(c1_copies, [at(0), at(3 * plane)]);
    // c3 extends c1: its last operand is written in place, after c1's range.
    assert_eq!(step_of(&c, "f").dst, at(5 * plane));
    assert!(c.plan.free_concats.contains(&layer(&c, "c3")));
    // c2 (b, a, e) copies b and a; e, read by c2 alone, is written in place.
    let c2 = layer(&c, "c2");
    assert_eq!(copies(&c).iter().filter(|s| s.layers == [c2]).count(), 2);
    assert!(!c.plan.free_concats.contains(&c2));
    // The relu reading c1 (which c3 extends) writes elsewhere.
    let r1 = step_of(&c, "r1");
    assert_eq!(r1.srcs[0], at(0));
    assert_ne!(r1.dst.buf, Buf::Output, "{r1:?}");
}

/// DenseNet-121 (torchvision's layout, `models/densenet121_224.toml`): its four blocks'
/// 58 concats copy nothing, and the arena is smaller than with a buffer per concat.
#[test]
fn densenet_concats_copy_nothing() {
    let text = std::fs::read_to_string(repo().join("models/densenet121_224.toml")).unwrap();
    let c = compile_toml(&text).expect("compiles");
    assert!(copies(&c).is_empty(), "{} copies", copies(&c).len());
    let concats = c
        .model
        .layers
        .iter()
        .filter(|l| matches!(l.op, crate::ir::Op::Merge(crate::ir::Merge::Concat)))
        .count();
    assert_eq!(concats, 58);
    assert_eq!(c.plan.free_concats.len(), 58);
    // The largest concat (block 1's last: 256 x 56 x 56) and the tensors around it.
    assert!(c.plan.arena < 3 * 256 * 56 * 56, "{}", c.plan.arena);
}
