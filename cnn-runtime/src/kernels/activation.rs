//! Element-wise activations: fused into the epilogue of conv/linear/batch-norm kernels, or
//! applied in place by [`activate`] where nothing produces the tensor just before.

/// An element-wise activation, applied in a kernel's epilogue or in place.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    /// No activation.
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `x` for `x >= 0`, else `slope * x`.
    LeakyRelu(f32),
}

impl Act {
    /// Applies the activation to one value.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Act::Identity => x,
            Act::Relu => x.max(0.0),
            Act::Relu6 => x.clamp(0.0, 6.0),
            Act::Tanh => x.tanh(),
            Act::Sigmoid => sigmoid(x),
            Act::LeakyRelu(slope) => {
                if x >= 0.0 {
                    x
                } else {
                    slope * x
                }
            }
        }
    }
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    // Stable for large |x|: never exp of a large positive number.
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Applies `act` in place to every value of `buf`.
#[inline]
pub fn activate(buf: &mut [f32], act: Act) {
    match act {
        Act::Identity => {}
        // One loop per variant so each is a tight, vectorisable loop.
        Act::Relu => buf.iter_mut().for_each(|x| *x = x.max(0.0)),
        Act::Relu6 => buf.iter_mut().for_each(|x| *x = x.clamp(0.0, 6.0)),
        _ => buf.iter_mut().for_each(|x| *x = act.apply(*x)),
    }
}
