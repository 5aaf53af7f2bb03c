//! Fusions and working memory the plan decides: packing room, expansion + depthwise
//! pairs, max pools in Winograd's output transform, residual adds in a convolution's
//! epilogue.

use super::*;

/// A 1x1 layer on a small map gets packing room for its channel tiles in the arena
/// where that leaves the arena's size as it is (a late layer, under the early maps'
/// high-water mark) and none where it would raise it; the generated code passes it.
#[test]
fn packing_room_only_where_it_is_free() {
    let compile = |tokens: TokenStream, optional: bool| {
        crate::plan::OPTIONAL_OFF.with(|o| o.set(!optional));
        let c = compile_inline(tokens).expect("compiles");
        crate::plan::OPTIONAL_OFF.with(|o| o.set(false));
        c
    };
    let late = quote::quote!(struct M {
        input: [16, 56, 56],
        stem: conv(64, kernel = 3, padding = 1),
        p: max_pool(8),
        e: conv(960, kernel = 1),
        pr: conv(320, kernel = 1),
        f: flatten,
        fc: linear(10),
    });
    let (with, without) = (compile(late.clone(), true), compile(late, false));
    let pr = |c: &Compiled| {
        c.plan
            .steps
            .iter()
            .find(|s| s.layers == [3])
            .cloned()
            .unwrap()
    };
    let (region, len) = pr(&with)
        .scratch
        .expect("packing room for `pr` (960 -> 320 on 7x7)");
    assert!(len > 960 * 7 * 7, "{len}");
    assert!(region.offset + len <= with.plan.arena);
    assert_eq!(with.plan.arena, without.plan.arena, "the arena grew");
    assert_eq!(pr(&without).scratch, None);
    // The room overlaps neither what the step reads nor what it writes.
    let step = pr(&with);
    for (r, l) in step
        .srcs
        .iter()
        .zip(step.inputs.iter().map(|s| s.len()))
        .chain([(&step.dst, step.output.len())])
    {
        if r.buf == region.buf {
            assert!(
                r.offset + l <= region.offset || region.offset + len <= r.offset,
                "{step:?}"
            );
        }
    }
    let steps = crate::codegen::steps(&with.model, &with.shapes, &with.plan);
    let code: String = steps.0.steps.iter().map(|t| t.to_string()).collect();
    assert!(code.contains("conv2d_scratch"), "{code}");
    // The same layer first: its packing room would be most of the arena.
    let first = quote::quote!(struct M { input: [960, 7, 7], pr: conv(320, kernel = 1), f: flatten, fc: linear(10) });
    let c = compile(first, true);
    assert_eq!(c.plan.steps[0].scratch, None);
    assert_eq!(c.plan.arena, compile(quote::quote!(struct M { input: [960, 7, 7], pr: conv(320, kernel = 1), f: flatten, fc: linear(10) }), false).plan.arena);
}

/// A 1x1 expansion whose only reader is a stride-2 depthwise layer on a large map runs
/// with it band by band (one step, both layers' batch norms and activations, no
/// intermediate tensor); not with a second reader, a stride of 1 or a small map.
#[test]
fn expansion_and_depthwise_fuse_where_the_rule_says() {
    use crate::plan::Kernel;
    let fused = |c: &Compiled| {
        c.plan
            .steps
            .iter()
            .filter(|s| matches!(s.kernel, Kernel::ExpandDepthwise { .. }))
            .count()
    };
    let c = compile_inline(quote::quote!(struct M {
        input: [16, 112, 112],
        e: conv(96, kernel = 1, bias = false),
        e_bn: batch_norm,
        relu6,
        d: conv(96, kernel = 3, stride = 2, padding = 1, groups = 96, bias = false),
        d_bn: batch_norm,
        hardswish,
        gap: global_avg_pool,
    }))
    .unwrap();
    assert_eq!(fused(&c), 1, "{:?}", c.plan.steps);
    let step = &c.plan.steps[0];
    assert_eq!(step.layers, [0, 1, 2, 3, 4, 5]);
    assert_eq!(step.output, Shape::Chw(96, 56, 56));
    assert_eq!(
        crate::plan::describe(step, &c.model),
        "conv2d+bn+relu6 > depthwise_conv2d+bn+hardswish"
    );
    // No tensor of the expansion's size: the arena holds the output and the bands.
    let (_, len) = step.scratch.expect("band buffers");
    assert!(c.plan.arena < 96 * 112 * 112, "{}", c.plan.arena);
    assert!(c.plan.arena >= 96 * 56 * 56 + len);
    let steps = crate::codegen::steps(&c.model, &c.shapes, &c.plan);
    let code: String = steps.0.steps.iter().map(|t| t.to_string()).collect();
    assert!(code.contains("expand_depthwise"), "{code}");
    // A second reader of the expansion, a stride of 1, a small map: two steps.
    let two_readers = compile_inline(quote::quote!(struct M {
        input: [16, 112, 112],
        e: conv(96, kernel = 1),
        d: conv(96, kernel = 3, stride = 2, padding = 1, groups = 96),
        p: max_pool(2, from = e),
        s: add(d, p),
    }))
    .unwrap();
    assert_eq!(fused(&two_readers), 0);
    for tokens in [
        quote::quote!(struct M { input: [16, 112, 112], e: conv(96, kernel = 1), d: conv(96, kernel = 3, padding = 1, groups = 96) }),
        quote::quote!(struct M { input: [32, 28, 28], e: conv(192, kernel = 1), d: conv(192, kernel = 3, stride = 2, padding = 1, groups = 192) }),
    ] {
        assert_eq!(fused(&compile_inline(tokens).unwrap()), 0);
    }
}

/// `#[winograd = false]` runs every convolution direct: no Winograd step, no scratch
/// for its tiles, the 2x2 max pool its own step; `#[winograd = true]` is the default.
#[test]
fn winograd_false_keeps_every_convolution_direct() {
    use crate::plan::Kernel;
    let winograd = |c: &Compiled| {
        c.plan
            .steps
            .iter()
            .filter(|s| {
                matches!(
                    s.kernel,
                    Kernel::Conv {
                        winograd: Some(_),
                        ..
                    }
                )
            })
            .count()
    };
    let body = quote::quote!({
        input: [32, 32, 32],
        c1: conv(64, kernel = 3, padding = 1),
        relu,
        c2: conv(64, kernel = 3, padding = 2, dilation = 2),
        p: max_pool(2),
    });
    let default = compile_inline(quote::quote!(struct M #body)).unwrap();
    let on = compile_inline(quote::quote!(#[winograd = true] struct M #body)).unwrap();
    let off = compile_inline(quote::quote!(#[winograd = false] struct M #body)).unwrap();
    assert_eq!(winograd(&default), 2, "{:?}", default.plan.steps);
    assert_eq!(winograd(&on), 2, "{:?}", on.plan.steps);
    assert_eq!(winograd(&off), 0, "{:?}", off.plan.steps);
    assert!(off.plan.steps.iter().all(|s| s.scratch.is_none()));
    let names: Vec<String> = off
        .plan
        .steps
        .iter()
        .map(|s| crate::plan::describe(s, &off.model))
        .collect();
    assert_eq!(names, ["conv2d+relu", "conv2d", "max_pool2d"]);
    let err = |tokens: TokenStream| match syn::parse2::<Header>(tokens) {
        Ok(_) => panic!("parsed"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        err(quote::quote!(
            #[winograd = "no"]
            struct M;
        )),
        "expected #[winograd = false] or #[winograd = true]"
    );
    assert_eq!(
        err(quote::quote!(
            #[winograd]
            struct M;
        )),
        "expected #[winograd = false] or #[winograd = true]"
    );
    assert_eq!(
        err(quote::quote!(
            #[winograd = false]
            #[winograd = false]
            struct M;
        )),
        "#[winograd = ..] is given twice"
    );
}

/// A 2x2 max pool runs in the output transform of the Winograd convolution before it
/// (`Kernel::Conv { pool }`) when it alone reads the activated output: one step, the
/// pooled shape, no tensor of the convolution's size; floor mode on odd maps. Not with a
/// second reader, a pool of another window, stride or padding, ceil mode on an odd map, a
/// direct convolution, or an activation after the pool (that stays its own step).
#[test]
fn max_pool_fuses_into_winograd_where_it_may() {
    use crate::plan::Kernel;
    let pooled = |c: &Compiled| {
        c.plan
            .steps
            .iter()
            .filter(|s| matches!(s.kernel, Kernel::Conv { pool: Some(_), .. }))
            .count()
    };
    let c = compile_inline(quote::quote!(struct M {
        input: [32, 32, 32],
        c: conv(32, kernel = 3, padding = 1, bias = false),
        bn: batch_norm,
        relu,
        p: max_pool(2),
        gap: global_avg_pool,
    }))
    .unwrap();
    assert_eq!(pooled(&c), 1, "{:?}", c.plan.steps);
    let step = &c.plan.steps[0];
    assert_eq!(step.layers, [0, 1, 2, 3]);
    assert_eq!(step.output, Shape::Chw(32, 16, 16));
    assert_eq!(
        crate::plan::describe(step, &c.model),
        "winograd3x3[f4x4]+bn+relu+max_pool2d"
    );
    // No tensor of the convolution's size in the arena: its scratch and the pooled
    // output (unfused, the convolution's output would be live beside the scratch).
    let (_, len) = step.scratch.expect("Winograd scratch");
    assert!(c.plan.arena < len + 32 * 32 * 32, "{}", c.plan.arena);
    assert!(c.plan.arena >= len + 32 * 16 * 16, "{}", c.plan.arena);
    let steps = crate::codegen::steps(&c.model, &c.shapes, &c.plan);
    let code: String = steps.0.steps.iter().map(|t| t.to_string()).collect();
    assert!(code.contains("winograd_conv3x3_maxpool2"), "{code}");
    // Odd map, floor mode: 15x15 -> 7x7.
    let odd = compile_inline(quote::quote!(struct M {
        input: [32, 15, 15],
        c: conv(32, kernel = 3, padding = 1),
        p: max_pool(2),
    }))
    .unwrap();
    assert_eq!(pooled(&odd), 1);
    assert_eq!(odd.plan.steps[0].output, Shape::Chw(32, 7, 7));
    for tokens in [
        // A second reader of the convolution's output.
        quote::quote!(struct M { input: [32, 32, 32], c: conv(32, kernel = 3, padding = 1), r: relu, p: max_pool(2), g: global_max_pool(from = r), q: global_max_pool(from = p), s: add(g, q) }),
        // Other windows, strides, padding, dilation.
        quote::quote!(struct M { input: [32, 32, 32], c: conv(32, kernel = 3, padding = 1), p: max_pool(3, stride = 2) }),
        quote::quote!(struct M { input: [32, 32, 32], c: conv(32, kernel = 3, padding = 1), p: max_pool(2, stride = 1) }),
        quote::quote!(struct M { input: [32, 32, 32], c: conv(32, kernel = 3, padding = 1), p: max_pool(2, padding = 1) }),
        quote::quote!(struct M { input: [32, 32, 32], c: conv(32, kernel = 3, padding = 1), p: max_pool(2, dilation = 2) }),
        // Ceil mode on an odd map: one more row and column than the fused pool gives.
        quote::quote!(struct M { input: [32, 15, 15], c: conv(32, kernel = 3, padding = 1), p: max_pool(2, ceil_mode = true) }),
        // An average pool; a direct convolution (few channels).
        quote::quote!(struct M { input: [32, 32, 32], c: conv(32, kernel = 3, padding = 1), p: avg_pool(2) }),
        quote::quote!(struct M { input: [3, 32, 32], c: conv(8, kernel = 3, padding = 1), p: max_pool(2) }),
        // A dilated convolution (polyphase Winograd).
        quote::quote!(struct M { input: [64, 32, 32], c: conv(64, kernel = 3, padding = 2, dilation = 2), p: max_pool(2) }),
    ] {
        let c = compile_inline(tokens.clone()).unwrap();
        assert_eq!(pooled(&c), 0, "{tokens}");
    }
    // Ceil mode on an even map is floor mode: fused.
    let even_ceil = compile_inline(quote::quote!(struct M {
        input: [32, 16, 16],
        c: conv(32, kernel = 3, padding = 1),
        p: max_pool(2, ceil_mode = true),
    }))
    .unwrap();
    assert_eq!(pooled(&even_ceil), 1);
    // An activation after the pool is its own step, after the fused one.
    let after = compile_inline(quote::quote!(struct M {
        input: [32, 32, 32],
        c: conv(32, kernel = 3, padding = 1),
        p: max_pool(2),
        relu,
    }))
    .unwrap();
    assert_eq!(pooled(&after), 1);
    assert_eq!(after.plan.steps.len(), 2);
    assert_eq!(after.plan.steps[1].kernel, Kernel::Activation);
    // The PyTorch cases that check the fused kernel's numbers keep exercising it.
    for (case, fused) in [
        ("fusion_winograd_max_pool", 1),
        ("fusion_winograd_max_pool_odd", 2),
        ("fusion_winograd_max_pool_read_twice", 0),
    ] {
        let path = repo().join("tests/cases").join(case).join("model.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let c = compile_toml(&text).unwrap();
        assert_eq!(pooled(&c), fused, "{case}");
    }
}

/// Steps of `c` that are convolutions with a fused residual add.
fn residual_steps(c: &Compiled) -> Vec<&crate::plan::Step> {
    use crate::plan::Kernel;
    c.plan
        .steps
        .iter()
        .filter(|s| matches!(s.kernel, Kernel::Conv { residual: true, .. }))
        .collect()
}

/// Whether the plan still runs an `add` kernel.
fn has_add(c: &Compiled) -> bool {
    use crate::plan::Kernel;
    c.plan
        .steps
        .iter()
        .any(|s| matches!(s.kernel, Kernel::Binary { .. }))
}

/// An `add` whose operand a convolution (no activation yet, not depthwise) produced
/// for it alone, the other operand written before that convolution, runs in the
/// convolution's epilogue (`Kernel::Conv { residual }`), a ReLU after it too: a basic
/// block's 3x3 (Winograd) and a bottleneck's 1x1 (direct), whichever operand order,
/// the later of two convolutions (ResNet's downsampling shortcut). Not after an
/// activation, with a second reader, a broadcast, a depthwise convolution, an operand
/// written after the convolution; a batch norm after the add stays its own step.
#[test]
fn residual_adds_fuse_into_the_convolution_where_they_may() {
    let basic = compile_inline(quote::quote!(struct M {
        input: [16, 14, 14],
        stem: conv(32, kernel = 3, padding = 1, bias = false),
        bn0: batch_norm,
        r0: relu,
        c1: conv(32, kernel = 3, padding = 1, bias = false),
        bn1: batch_norm,
        r1: relu,
        c2: conv(32, kernel = 3, padding = 1, bias = false),
        bn2: batch_norm,
        s: add(bn2, r0),
        r2: relu,
        p: conv(32, kernel = 1),
        s2: add(r2, p),
        gap: global_avg_pool,
    }))
    .unwrap();
    let fused = residual_steps(&basic);
    assert_eq!(fused.len(), 2, "{:?}", basic.plan.steps);
    assert!(!has_add(&basic));
    let names: Vec<String> = fused
        .iter()
        .map(|s| crate::plan::describe(s, &basic.model))
        .collect();
    assert_eq!(names, ["winograd3x3[f4x4]+bn+add+relu", "conv2d+add"]);
    // The block's 3x3 reads the stem's activation as its second source.
    assert_eq!(fused[0].layers, [6, 7, 8, 9]);
    assert_eq!(fused[0].srcs.len(), 2);
    assert_eq!(fused[0].inputs[1], Shape::Chw(32, 14, 14));
    let steps = crate::codegen::steps(&basic.model, &basic.shapes, &basic.plan);
    let code: String = steps.0.steps.iter().map(|t| t.to_string()).collect();
    assert!(code.contains("winograd_conv3x3_residual"), "{code}");
    assert!(code.contains("conv2d_residual"), "{code}");

    // A downsampling shortcut: both operands are convolutions; the later one fuses.
    let down = compile_inline(quote::quote!(struct M {
        input: [16, 14, 14],
        c1: conv(32, kernel = 3, stride = 2, padding = 1),
        r1: relu,
        c2: conv(32, kernel = 3, padding = 1),
        sc: conv(32, kernel = 1, stride = 2, from = input),
        s: add(c2, sc),
        r: relu,
    }))
    .unwrap();
    let fused = residual_steps(&down);
    assert_eq!(fused.len(), 1);
    assert_eq!(fused[0].layers, [3, 4, 5]);
    assert!(!has_add(&down));

    for (why, tokens) in [
        (
            "activation before the add",
            quote::quote!(struct M { input: [8, 10, 10], a: conv(8, kernel = 3, padding = 1), r: relu, s: add(r, input) }),
        ),
        (
            "second reader",
            quote::quote!(struct M { input: [8, 10, 10], a: conv(8, kernel = 3, padding = 1), s: add(a, input), t: add(s, a) }),
        ),
        (
            "broadcast",
            quote::quote!(struct M { input: [8, 10, 10], g: avg_pool(10), a: conv(8, kernel = 1), s: add(input, a) }),
        ),
        (
            "depthwise",
            quote::quote!(struct M { input: [8, 10, 10], a: conv(8, kernel = 3, padding = 1, groups = 8), s: add(a, input) }),
        ),
        (
            "operand written after",
            quote::quote!(struct M { input: [8, 10, 10], a: conv(8, kernel = 1), b: relu(from = input), s: add(a, b) }),
        ),
    ] {
        let c = compile_inline(tokens).unwrap();
        assert!(residual_steps(&c).is_empty(), "{why}: {:?}", c.plan.steps);
        assert!(has_add(&c), "{why}");
    }

    // A batch norm after a fused add is not folded into the convolution's weights.
    let bn_after = compile_inline(quote::quote!(struct M {
        input: [8, 10, 10],
        a: conv(8, kernel = 3, padding = 1),
        s: add(a, input),
        n: batch_norm,
    }))
    .unwrap();
    assert_eq!(residual_steps(&bn_after).len(), 1);
    assert!(bn_after
        .plan
        .steps
        .iter()
        .any(|s| matches!(s.kernel, crate::plan::Kernel::Affine { .. })));
}

/// The PyTorch-generated cases with residual connections run them fused (so the
/// conformance tests check the fused kernels against PyTorch): ResNet basic blocks (a
/// 3x3 and a downsampling 1x1), MobileNetV2's projection, a 1-D TCN.
#[test]
fn conformance_residual_cases_run_fused() {
    for (case, fused) in [
        ("graph_resnet_basic_blocks", 2),
        ("graph_mobilenetv2_inverted_residual", 1),
        ("seq1d_tcn_residual", 3),
    ] {
        let path = repo().join("tests/cases").join(case).join("model.toml");
        let text = std::fs::read_to_string(&path).expect("case file");
        let c = compile_toml(&text).unwrap();
        assert_eq!(
            residual_steps(&c).len(),
            fused,
            "{case}: {:?}",
            c.plan.steps
        );
    }
}

/// Steps of `c` that are convolutions with a folded per-channel scale.
fn scaled_steps(c: &Compiled) -> Vec<&crate::plan::Step> {
    use crate::plan::Kernel;
    c.plan
        .steps
        .iter()
        .filter(|s| matches!(s.kernel, Kernel::Conv { scale: true, .. }))
        .collect()
}

/// A squeeze-and-excitation block's `mul` by a `[C, 1, 1]` scale folds into the
/// projection that alone reads it (`Kernel::Conv { scale }`: the convolution reads the
/// unscaled tensor and the scale, its working memory holds the scaled weights), its
/// batch norm and a residual add after it too, whichever operand order; kept where the
/// weights outnumber the pixels (`conv_scale_fold_len`), with a second reader of the
/// product, an elementwise (unbroadcast) product, a grouped or depthwise consumer, an
/// activation on the product.
#[test]
fn se_scales_fold_into_the_projection_where_they_pay() {
    let block = |side: usize, order: bool, extra: TokenStream| {
        let mul = if order {
            quote::quote!(mul(d, g))
        } else {
            quote::quote!(mul(g, d))
        };
        compile_inline(quote::quote!(struct M {
            input: [16, #side, #side],
            d: conv(16, kernel = 3, padding = 1, groups = 16),
            p: adaptive_avg_pool(1),
            f1: conv(4, kernel = 1),
            r: relu,
            f2: conv(16, kernel = 1),
            g: sigmoid,
            m: #mul,
            #extra
        }))
        .unwrap()
    };
    // Plain projection + batch norm, both operand orders.
    for order in [true, false] {
        let c = block(
            14,
            order,
            quote::quote!(pr: conv(24, kernel = 1, bias = false), bn: batch_norm,),
        );
        let s = scaled_steps(&c);
        assert_eq!(s.len(), 1, "{:?}", c.plan.steps);
        assert_eq!(crate::plan::describe(s[0], &c.model), "mul > conv2d+bn");
        // The convolution names the step, the `mul` and the batch norm follow.
        assert_eq!(s[0].layers, [7, 6, 8]);
        assert_eq!(s[0].inputs, [Shape::Chw(16, 14, 14), Shape::Chw(16, 1, 1)]);
        let (region, len) = s[0].scratch.expect("scaled weights");
        assert!(len >= 16 * 32, "{len}");
        assert!(region.offset + len <= c.plan.arena);
        assert!(!c
            .plan
            .steps
            .iter()
            .any(|s| matches!(s.kernel, crate::plan::Kernel::Binary { .. })));
        let steps = crate::codegen::steps(&c.model, &c.shapes, &c.plan);
        let code: String = steps.0.steps.iter().map(|t| t.to_string()).collect();
        assert!(code.contains("conv2d_scaled"), "{code}");
    }
    // A residual add after it: the scaled convolution adds it in its epilogue.
    let c = block(
        14,
        true,
        quote::quote!(
            pr: conv(16, kernel = 1, bias = false),
            bn: batch_norm,
            s: add(bn, input),
        ),
    );
    let s = scaled_steps(&c);
    assert_eq!(s.len(), 1, "{:?}", c.plan.steps);
    assert_eq!(crate::plan::describe(s[0], &c.model), "mul > conv2d+bn+add");
    assert_eq!(s[0].srcs.len(), 3);
    let steps = crate::codegen::steps(&c.model, &c.shapes, &c.plan);
    let code: String = steps.0.steps.iter().map(|t| t.to_string()).collect();
    assert!(code.contains("conv2d_scaled_residual"), "{code}");
    // Kept: 7x7 map with 64 outputs (64 > 49 pixels); a second reader of the product;
    // a grouped projection; an activation on the product.
    let kept = [
        block(7, true, quote::quote!(pr: conv(64, kernel = 1),)),
        block(
            14,
            true,
            quote::quote!(pr: conv(24, kernel = 1), q: conv(24, kernel = 1, from = m), s2: add(pr, q),),
        ),
        block(
            14,
            true,
            quote::quote!(pr: conv(24, kernel = 1, groups = 2),),
        ),
        block(14, true, quote::quote!(h: relu, pr: conv(24, kernel = 1),)),
    ];
    for (k, c) in kept.iter().enumerate() {
        assert!(scaled_steps(c).is_empty(), "case {k}: {:?}", c.plan.steps);
    }
    // An elementwise product of two full tensors is no scale.
    let c = compile_inline(quote::quote!(struct M {
        input: [16, 14, 14],
        a: conv(16, kernel = 1),
        b: conv(16, kernel = 1, from = input),
        m: mul(a, b),
        pr: conv(24, kernel = 1),
    }))
    .unwrap();
    assert!(scaled_steps(&c).is_empty(), "{:?}", c.plan.steps);
}
