//! The `cnn_model!` procedural macro. The compiler itself (parse, lower, check, infer,
//! plan, emit) is the plain library `cnn-compiler`; this crate only hands it the tokens.

#![warn(missing_docs)]

/// Compiles a CNN description into a struct implementing `cnn::Model`.
///
/// ```ignore
/// cnn_model! {
///     /// LeNet-5 (LeCun et al., 1998).
///     pub struct LeNet5 {
///         input: [1, 32, 32],
///         conv1: conv(6, kernel = 5),
///         tanh,
///         pool1: avg_pool(2),
///         conv2: conv(16, kernel = 5),
///         tanh,
///         avg_pool(2),
///         flatten,
///         fc1: linear(120),
///         tanh,
///         fc2: linear(84),
///         tanh,
///         fc3: linear(10),
///     }
/// }
///
/// cnn_model! {
///     #[file = "models/lenet5.toml"]   // relative to CARGO_MANIFEST_DIR
///     pub struct LeNet5;
/// }
/// ```
///
/// The compiler's attributes: `#[file = "net.toml"]` (the description from a TOML file),
/// `#[weights = "net.safetensors"]` (weights embedded and packed at compile time) and
/// `#[winograd = false]` (every convolution direct: closer to PyTorch's float32 sums,
/// slower where Winograd would have run).
///
/// The language (ops, arguments, defaults, graphs, 1-D signals, PyTorch's shape rules)
/// is specified in the repository's `docs/LANGUAGE.md`.
#[proc_macro]
pub fn cnn_model(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    cnn_compiler::expand(input.into()).into()
}
