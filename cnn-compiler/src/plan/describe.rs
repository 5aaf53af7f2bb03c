//! Names of the planned kernels as the summary shows them.

use super::{CtPath, Kernel, Step};
use crate::ir::{Activation, Merge, Model, Op, PoolKind};

/// The kernel's name as shown in the summary, e.g. `conv2d+bn+relu`.
pub fn describe(step: &Step, model: &Model) -> String {
    let one_d = model.is_1d();
    let d = if one_d { "1d" } else { "2d" };
    let mut s = match step.kernel {
        Kernel::Conv {
            depthwise: true, ..
        } => format!("depthwise_conv{d}"),
        Kernel::Conv {
            winograd: Some(tile),
            ..
        } => format!("winograd3x3[f{tile}x{tile}]"),
        // A folded per-channel `mul` runs first (on the weights).
        Kernel::Conv { scale: true, .. } => format!("mul > conv{d}"),
        Kernel::Conv { .. } => format!("conv{d}"),
        Kernel::ExpandDepthwise {
            expand_bn,
            expand_act,
            ..
        } => {
            // The expansion's name, then the depthwise layer's (its batch norm and
            // activation appended below).
            let mut e = format!("conv{d}");
            push_epilogue(&mut e, expand_bn.is_some(), false, expand_act);
            format!("{e} > depthwise_conv{d}")
        }
        Kernel::ConvTranspose {
            path: CtPath::Phases,
            ..
        } => format!("conv_transpose{d}[gemm]"),
        Kernel::ConvTranspose {
            path: CtPath::Split,
            layer,
            ..
        } => {
            let phases = match crate::shape::kernel_op(&model.layers[layer].op, model.is_1d()) {
                Op::ConvTranspose(ct) => ct.stride.0 * ct.stride.1,
                _ => unreachable!("planned transposed convs are conv_transpose layers"),
            };
            format!("conv_transpose{d}[gemm x{phases}]")
        }
        Kernel::ConvTranspose { .. } => format!("conv_transpose{d}"),
        Kernel::Linear { .. } => "linear".to_string(),
        Kernel::Pool { layer } => match model.layers[layer].op {
            Op::Pool(p) if p.kind == PoolKind::Max => format!("max_pool{d}"),
            _ => format!("avg_pool{d}"),
        },
        Kernel::AdaptivePool { layer } => match model.layers[layer].op {
            Op::AdaptivePool {
                kind: PoolKind::Max,
                ..
            } => format!("adaptive_max_pool{d}"),
            _ => format!("adaptive_avg_pool{d}"),
        },
        Kernel::Upsample { layer } => match model.layers[layer].op {
            Op::Upsample(u) if u.mode != crate::ir::UpMode::Nearest => {
                if one_d {
                    "upsample_linear".to_string()
                } else {
                    "upsample_bilinear".to_string()
                }
            }
            _ => "upsample_nearest".to_string(),
        },
        Kernel::GlobalAvg => "global_avg_pool".to_string(),
        Kernel::GlobalMax => "global_max_pool".to_string(),
        Kernel::Affine { .. } => "channel_affine".to_string(),
        Kernel::Activation => "activate".to_string(),
        Kernel::Softmax => {
            if step.output.rank() == 1 {
                "softmax".to_string()
            } else {
                "softmax_channels".to_string()
            }
        }
        Kernel::Binary { op, in_place } => {
            let name = if op == Merge::Add { "add" } else { "mul" };
            if in_place {
                format!("{name} (in place)")
            } else {
                name.to_string()
            }
        }
        Kernel::Copy => "copy".to_string(),
        Kernel::ChannelShuffle { .. } if step.layers.len() > 1 => {
            "concat+channel_shuffle".to_string()
        }
        Kernel::ChannelShuffle { .. } => "channel_shuffle".to_string(),
    };
    let bn = matches!(
        step.kernel,
        Kernel::Conv { bn: Some(_), .. }
            | Kernel::ExpandDepthwise { bn: Some(_), .. }
            | Kernel::Linear { bn: Some(_), .. }
            | Kernel::ConvTranspose { bn: Some(_), .. }
    );
    let act = if step.kernel == Kernel::Activation {
        None
    } else {
        step.act
    };
    let add = matches!(step.kernel, Kernel::Conv { residual: true, .. });
    push_epilogue(&mut s, bn, add, act);
    if let Kernel::Conv { pool: Some(_), .. } = step.kernel {
        s.push_str(&format!("+max_pool{d}"));
    }
    s
}

/// Appends a kernel's folded batch norm, fused residual add (before the activation) and
/// fused activation to its name: `+bn+add+relu`.
fn push_epilogue(name: &mut String, bn: bool, add: bool, act: Option<Activation>) {
    if bn {
        name.push_str("+bn");
    }
    if add {
        name.push_str("+add");
    }
    if let Some(a) = act {
        name.push('+');
        name.push_str(act_name(a));
    }
}

/// The activation's op name.
pub fn act_name(a: Activation) -> &'static str {
    match a {
        Activation::Relu => "relu",
        Activation::Relu6 => "relu6",
        Activation::Tanh => "tanh",
        Activation::Sigmoid => "sigmoid",
        Activation::LeakyRelu(_) => "leaky_relu",
        Activation::Silu => "silu",
        Activation::HardSwish => "hardswish",
        Activation::HardSigmoid => "hardsigmoid",
        Activation::Gelu => "gelu",
    }
}
