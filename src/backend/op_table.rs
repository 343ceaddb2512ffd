//! The op tables: every elementwise op and reduction is defined here, once, as one row.
//!
//! A row of [`unary_table!`] or [`binary_table!`] gives an op's variant and docs, its name
//! (kernel and error names), the name of its autodiff `Function`, its reference function
//! (`apply`, from `operators.rs`), its expression in WGSL and in CUDA C (`{a}`, `{b}` stand
//! for the operands), and its derivative as a rule over a fused [`Program`]'s nodes
//! (`grad`). Everything else is made from the rows:
//! - the enums [`UnaryOp`] / [`BinaryOp`] (variants, `ALL`, `name`, `apply`), here;
//! - the CPU's monomorphised kernels (`with_unary!` / `with_binary!` in `cpu/`), used by
//!   map, zip and the fused interpreter;
//! - the generated GPU kernels: `map` and `zip` on wgpu and CUDA are one-op fused programs,
//!   so their WGSL and CUDA come from `wgsl` / `cuda` through the fused code generators;
//! - the symbolic gradient ([`Program::gradient`]) and the tensor `Map` and `Zip`
//!   functions' backward, from `grad`;
//! - the reduce rows' `wgsl` / `cuda` identity and combine: the block generated into
//!   `shaders/reduce.wgsl` and `cuda/reduce.cu` (`gpu::sources`).
//!
//! Transcendental functions are called by name (`log_f`, `exp_f`, ...): they live in
//! `shaders/math.wgsl` and `cuda/math.cuh`, twins with their accuracy tests.
//!
//! CUDA forms use the `_rn` intrinsics for `+`, `*` and `/`, which the compiler never
//! contracts into fused multiply-adds: a fused kernel rounds every step as the primitives
//! do.
//!
//! [`Program`]: super::fused::Program
//! [`Program::gradient`]: super::fused::Program::gradient

use super::fused::{ProgramBuilder, Var};
use crate::operators as ops;

/// The unary (map) op table. `$cb!` receives `$args` and then one row per op:
/// `Variant { name, function, apply, wgsl, cuda, grad }`, where `grad(p, x, y, g)` builds
/// `g * f'(x)` in the program builder `p` from the operand `x`, the op's own value `y`
/// and the incoming gradient `g`.
#[macro_export]
#[doc(hidden)]
macro_rules! unary_table {
    ($cb:ident! $args:tt) => {
        $cb! { $args
            /// -x
            Neg {
                name: "neg", function: "Neg", apply: ops::neg::<f32>,
                wgsl: "-{a}", cuda: "-{a}",
                grad: |p, _x, _y, g| p.unary(UnaryOp::Neg, g),
            }
            /// x
            Id {
                name: "id", function: "Id", apply: ops::id::<f32>,
                wgsl: "{a}", cuda: "{a}",
                grad: |_p, _x, _y, g| g,
            }
            /// 1/x
            Inv {
                name: "inv", function: "Inv", apply: ops::inv::<f32>,
                wgsl: "1.0 / {a}", cuda: "__fdiv_rn(1.0f, {a})",
                grad: |p, x, _y, g| p.binary(BinaryOp::InvBack, x, g),
            }
            /// max(x, 0)
            Relu {
                name: "relu", function: "ReLU", apply: ops::relu::<f32>,
                wgsl: "select(0.0, {a}, {a} > 0.0)", cuda: "({a} > 0.0f ? {a} : 0.0f)",
                grad: |p, x, _y, g| p.binary(BinaryOp::ReluBack, x, g),
            }
            /// 1/(1+e^-x), stable on both sides
            Sigmoid {
                name: "sigmoid", function: "Sigmoid", apply: ops::sigmoid::<f32>,
                wgsl: "sigmoid_f({a})", cuda: "sigmoid_f({a})",
                grad: |p, x, _y, g| p.binary(BinaryOp::SigmoidBack, x, g),
            }
            /// ln x
            Log {
                name: "log", function: "Log", apply: ops::log::<f32>,
                wgsl: "log_f({a})", cuda: "log_f({a})",
                grad: |p, x, _y, g| p.binary(BinaryOp::LogBack, x, g),
            }
            /// e^x
            Exp {
                name: "exp", function: "Exp", apply: ops::exp::<f32>,
                wgsl: "exp_f({a})", cuda: "exp_f({a})",
                grad: |p, _x, y, g| p.mul(y, g),
            }
            /// tanh x
            Tanh {
                name: "tanh", function: "Tanh", apply: ops::tanh::<f32>,
                wgsl: "tanh_f({a})", cuda: "tanh_f({a})",
                // g (1 - y^2), from the stored value y = tanh x.
                grad: |p, _x, y, g| {
                    let one = p.constant(1.0);
                    let yy = p.mul(y, y);
                    let nyy = p.unary(UnaryOp::Neg, yy);
                    let d = p.add(one, nyy);
                    p.mul(g, d)
                },
            }
            /// sqrt(x), correctly rounded
            Sqrt {
                name: "sqrt", function: "Sqrt", apply: ops::sqrt::<f32>,
                wgsl: "sqrt({a})", cuda: "__fsqrt_rn({a})",
                // g * 0.5 / sqrt(x), from the stored value y = sqrt x.
                grad: |p, _x, y, g| {
                    let half = p.constant(0.5);
                    let r = p.unary(UnaryOp::Inv, y);
                    let s = p.mul(half, r);
                    p.mul(s, g)
                },
            }
        }
    };
}

/// The binary (zip) op table. `$cb!` receives `$args` and then one row per op:
/// `Variant { name, function, apply, wgsl, cuda, grad }`, where `grad` is `None` for an
/// op with no backward, else `Some(|p, x, y, z, g| [dx, dy])` with the gradients of both
/// operands (`None`: no gradient flows) from the operands `x`, `y`, the op's value `z` and
/// the incoming gradient `g`. The `*Back` ops take `(x, d)` and return `d * f'(x)`.
#[macro_export]
#[doc(hidden)]
macro_rules! binary_table {
    ($cb:ident! $args:tt) => {
        $cb! { $args
            /// a + b
            Add {
                name: "add", function: "Add", apply: ops::add::<f32>,
                wgsl: "{a} + {b}", cuda: "__fadd_rn({a}, {b})",
                grad: Some(|_p, _x, _y, _z, g| [Some(g), Some(g)]),
            }
            /// a * b
            Mul {
                name: "mul", function: "Mul", apply: ops::mul::<f32>,
                wgsl: "{a} * {b}", cuda: "__fmul_rn({a}, {b})",
                grad: Some(|p, x, y, _z, g| {
                    let dx = p.mul(g, y);
                    let dy = p.mul(g, x);
                    [Some(dx), Some(dy)]
                }),
            }
            /// 1 if a < b else 0
            Lt {
                name: "lt", function: "LT", apply: ops::lt::<f32>,
                wgsl: "select(0.0, 1.0, {a} < {b})", cuda: "({a} < {b} ? 1.0f : 0.0f)",
                grad: Some(|_p, _x, _y, _z, _g| [None, None]),
            }
            /// 1 if a == b else 0
            Eq {
                name: "eq", function: "EQ", apply: ops::eq::<f32>,
                wgsl: "select(0.0, 1.0, {a} == {b})", cuda: "({a} == {b} ? 1.0f : 0.0f)",
                grad: Some(|_p, _x, _y, _z, _g| [None, None]),
            }
            /// 1 if |a - b| < 1e-2 else 0
            IsClose {
                name: "is_close", function: "IsClose", apply: ops::is_close::<f32>,
                wgsl: "select(0.0, 1.0, abs({a} - {b}) < 0.01)",
                cuda: "(fabsf({a} - {b}) < 0.01f ? 1.0f : 0.0f)",
                grad: Some(|_p, _x, _y, _z, _g| [None, None]),
            }
            /// b where a > 0, else 0
            ReluBack {
                name: "relu_back", function: "ReLUBack", apply: ops::relu_back::<f32>,
                wgsl: "select(0.0, {b}, {a} > 0.0)", cuda: "({a} > 0.0f ? {b} : 0.0f)",
                grad: None,
            }
            /// b / a
            LogBack {
                name: "log_back", function: "LogBack", apply: ops::log_back::<f32>,
                wgsl: "{b} / {a}", cuda: "__fdiv_rn({b}, {a})",
                grad: None,
            }
            /// -b / a^2, as -(b / a) / a: a * a would underflow for |a| < 1e-19
            InvBack {
                name: "inv_back", function: "InvBack", apply: ops::inv_back::<f32>,
                wgsl: "-({b} / {a}) / {a}", cuda: "__fdiv_rn(-__fdiv_rn({b}, {a}), {a})",
                grad: None,
            }
            /// b * s(a) * (1 - s(a)), as b * s(a) * s(-a): no cancellation when s(a) is
            /// near 1
            SigmoidBack {
                name: "sigmoid_back", function: "SigmoidBack", apply: ops::sigmoid_back::<f32>,
                wgsl: "{b} * sigmoid_f({a}) * sigmoid_f(-{a})",
                cuda: "__fmul_rn(__fmul_rn({b}, sigmoid_f({a})), sigmoid_f(-{a}))",
                grad: None,
            }
        }
    };
}

/// The reduction table. `$cb!` receives `$args` and then one row per op:
/// `Variant { name, identity, combine, wgsl, cuda }`: the start value (the result for an
/// empty dimension) and the fold of one value into the accumulator, in Rust (the
/// reference) and as `(identity, combine)` expressions in WGSL and CUDA C (`{a}` the
/// accumulator, `{b}` the value). The GPU reduce kernels (`shaders/reduce.wgsl`,
/// `cuda/reduce.cu`) hold these expressions in a block generated from the table
/// (`gpu::sources::reduce_ops_wgsl` / `reduce_ops_cuda`; a test says when it is stale).
#[macro_export]
#[doc(hidden)]
macro_rules! reduce_table {
    ($cb:ident! $args:tt) => {
        $cb! { $args
            /// Sum, starting from 0.
            Sum {
                name: "sum", identity: 0.0f32, combine: |acc: f32, v: f32| acc + v,
                wgsl: ("0.0", "{a} + {b}"), cuda: ("0.0f", "{a} + {b}"),
            }
            /// Product, starting from 1.
            Prod {
                name: "prod", identity: 1.0f32, combine: |acc: f32, v: f32| acc * v,
                wgsl: ("1.0", "{a} * {b}"), cuda: ("1.0f", "{a} * {b}"),
            }
            /// Maximum, starting from -inf; NaN wins (`operators::max`; WGSL tests the
            /// bits, as it may assume comparisons never see NaN). `neg_inf()` is made at
            /// run time in the kernels: a constant may not be infinite in WGSL.
            Max {
                name: "max", identity: f32::NEG_INFINITY,
                combine: |acc: f32, v: f32| ops::max(acc, v),
                wgsl: (
                    "neg_inf()",
                    "select({b}, {a}, {a} > {b} || (bitcast<u32>({a}) & 0x7fffffffu) > 0x7f800000u)"
                ),
                cuda: ("neg_inf()", "({a} > {b} || {a} != {a} ? {a} : {b})"),
            }
        }
    };
}

pub use crate::{binary_table, reduce_table, unary_table};

/// The gradient rule of a unary row (see [`unary_table!`]).
type UnaryGrad = fn(&mut ProgramBuilder, Var, Var, Var) -> Var;
/// The gradient rule of a binary row (see [`binary_table!`]).
type BinaryGrad = fn(&mut ProgramBuilder, Var, Var, Var, Var) -> [Option<Var>; 2];

/// `template` with `{a}` and `{b}` replaced by the operands.
fn fill(template: &str, a: &str, b: &str) -> String {
    template.replace("{a}", a).replace("{b}", b)
}

macro_rules! count {
    () => { 0 };
    ($x:ident $($rest:ident)*) => { 1 + count!($($rest)*) };
}

macro_rules! define_unary {
    (() $( $(#[$doc:meta])* $V:ident {
        name: $name:literal, function: $function:literal, apply: $apply:expr,
        wgsl: $wgsl:literal, cuda: $cuda:literal, grad: $grad:expr $(,)?
    } )*) => {
        /// Elementwise functions of one argument (MiniTorch's map ops), one row each of
        /// the op table (`src/backend/op_table.rs`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum UnaryOp {
            $( $(#[$doc])* $V, )*
        }

        impl UnaryOp {
            /// Every unary op, for tests and kernel instantiation.
            pub const ALL: [UnaryOp; count!($($V)*)] = [$(UnaryOp::$V),*];

            /// Lower-case name, used in kernel and error names (`neg`, ...).
            pub fn name(self) -> &'static str {
                match self { $(UnaryOp::$V => $name,)* }
            }

            /// The name of the autodiff function that applies it (`ReLU`, ...).
            pub fn function_name(self) -> &'static str {
                match self { $(UnaryOp::$V => $function,)* }
            }

            /// The op on one value: the reference every kernel must agree with.
            #[inline]
            pub fn apply(self, x: f32) -> f32 {
                match self { $(UnaryOp::$V => ($apply)(x),)* }
            }

            /// The op on the WGSL expression `a`.
            pub fn wgsl(self, a: &str) -> String {
                match self { $(UnaryOp::$V => fill($wgsl, a, ""),)* }
            }

            /// The op on the CUDA C expression `a`.
            pub fn cuda(self, a: &str) -> String {
                match self { $(UnaryOp::$V => fill($cuda, a, ""),)* }
            }

            /// `g * f'(x)` built in `p`, from the operand `x`, the op's value `y` and the
            /// incoming gradient `g`.
            pub fn gradient(self, p: &mut ProgramBuilder, x: Var, y: Var, g: Var) -> Var {
                match self {
                    $(UnaryOp::$V => {
                        let rule: UnaryGrad = $grad;
                        rule(p, x, y, g)
                    })*
                }
            }
        }
    };
}

macro_rules! define_binary {
    (() $( $(#[$doc:meta])* $V:ident {
        name: $name:literal, function: $function:literal, apply: $apply:expr,
        wgsl: $wgsl:literal, cuda: $cuda:literal, grad: $grad:expr $(,)?
    } )*) => {
        /// Elementwise functions of two arguments (MiniTorch's zip ops), one row each of
        /// the op table (`src/backend/op_table.rs`). The `*Back` ops take `(x, d)` and
        /// return `d * f'(x)`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum BinaryOp {
            $( $(#[$doc])* $V, )*
        }

        impl BinaryOp {
            /// Every binary op, for tests and kernel instantiation.
            pub const ALL: [BinaryOp; count!($($V)*)] = [$(BinaryOp::$V),*];

            /// Lower-case name, used in kernel and error names (`add`, ...).
            pub fn name(self) -> &'static str {
                match self { $(BinaryOp::$V => $name,)* }
            }

            /// The name of the autodiff function that applies it (`Add`, ...).
            pub fn function_name(self) -> &'static str {
                match self { $(BinaryOp::$V => $function,)* }
            }

            /// The op on one pair: the reference every kernel must agree with.
            #[inline]
            pub fn apply(self, a: f32, b: f32) -> f32 {
                match self { $(BinaryOp::$V => ($apply)(a, b),)* }
            }

            /// The op on the WGSL expressions `a` and `b`.
            pub fn wgsl(self, a: &str, b: &str) -> String {
                match self { $(BinaryOp::$V => fill($wgsl, a, b),)* }
            }

            /// The op on the CUDA C expressions `a` and `b`.
            pub fn cuda(self, a: &str, b: &str) -> String {
                match self { $(BinaryOp::$V => fill($cuda, a, b),)* }
            }

            /// The gradients of both operands built in `p` (`None`: none flows), from the
            /// operands `x`, `y`, the op's value `z` and the incoming gradient `g`; `None`
            /// when the op has no backward.
            pub fn gradient(
                self,
                p: &mut ProgramBuilder,
                (x, y, z): (Var, Var, Var),
                g: Var,
            ) -> Option<[Option<Var>; 2]> {
                match self {
                    $(BinaryOp::$V => {
                        let rule: Option<BinaryGrad> = $grad;
                        rule.map(|r| r(p, x, y, z, g))
                    })*
                }
            }
        }
    };
}

macro_rules! define_reduce {
    (() $( $(#[$doc:meta])* $V:ident {
        name: $name:literal, identity: $identity:expr, combine: $combine:expr,
        wgsl: ($wgsl_id:literal, $wgsl_comb:literal $(,)?),
        cuda: ($cuda_id:literal, $cuda_comb:literal $(,)?) $(,)?
    } )*) => {
        /// Reductions along one dimension (MiniTorch's reduce ops), one row each of the
        /// op table (`src/backend/op_table.rs`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ReduceOp {
            $( $(#[$doc])* $V, )*
        }

        impl ReduceOp {
            /// Every reduce op.
            pub const ALL: [ReduceOp; count!($($V)*)] = [$(ReduceOp::$V),*];

            /// Lower-case name, used in kernel entry points (`reduce_sum`, ...).
            pub fn name(self) -> &'static str {
                match self { $(ReduceOp::$V => $name,)* }
            }

            /// The start value (the result for an empty dimension).
            #[inline]
            pub fn identity(self) -> f32 {
                match self { $(ReduceOp::$V => $identity,)* }
            }

            /// Fold one value into the accumulator.
            #[inline]
            pub fn combine(self, acc: f32, x: f32) -> f32 {
                match self { $(ReduceOp::$V => ($combine)(acc, x),)* }
            }

            /// The start value as a WGSL expression.
            pub fn wgsl_identity(self) -> &'static str {
                match self { $(ReduceOp::$V => $wgsl_id,)* }
            }

            /// The fold of the WGSL expression `v` into the accumulator `acc`.
            pub fn wgsl_combine(self, acc: &str, v: &str) -> String {
                match self { $(ReduceOp::$V => fill($wgsl_comb, acc, v),)* }
            }

            /// The start value as a CUDA C expression.
            pub fn cuda_identity(self) -> &'static str {
                match self { $(ReduceOp::$V => $cuda_id,)* }
            }

            /// The fold of the CUDA C expression `v` into the accumulator `acc`.
            pub fn cuda_combine(self, acc: &str, v: &str) -> String {
                match self { $(ReduceOp::$V => fill($cuda_comb, acc, v),)* }
            }
        }
    };
}

unary_table!(define_unary!());
binary_table!(define_binary!());
reduce_table!(define_reduce!());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_templates_use_their_operands() {
        let mut names: Vec<&str> = UnaryOp::ALL.iter().map(|o| o.name()).collect();
        names.extend(BinaryOp::ALL.iter().map(|o| o.name()));
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "two ops share a name");
        for op in UnaryOp::ALL {
            for e in [op.wgsl("v7"), op.cuda("v7")] {
                assert!(e.contains("v7") && !e.contains('{'), "{op:?}: {e}");
            }
        }
        for op in BinaryOp::ALL {
            for e in [op.wgsl("v7", "v8"), op.cuda("v7", "v8")] {
                assert!(
                    e.contains("v7") && e.contains("v8") && !e.contains('{'),
                    "{op:?}: {e}"
                );
            }
        }
        for op in ReduceOp::ALL {
            for e in [op.wgsl_combine("v7", "v8"), op.cuda_combine("v7", "v8")] {
                assert!(
                    e.contains("v7") && e.contains("v8") && !e.contains('{'),
                    "{op:?}: {e}"
                );
            }
        }
    }

    #[test]
    fn reduce_rows_fold_from_their_identity() {
        let xs = [3.0f32, -1.5, 2.0];
        let fold = |op: ReduceOp| xs.iter().fold(op.identity(), |a, &x| op.combine(a, x));
        assert_eq!(fold(ReduceOp::Sum), 3.5);
        assert_eq!(fold(ReduceOp::Prod), -9.0);
        assert_eq!(fold(ReduceOp::Max), 3.0);
        assert!(ReduceOp::Max.combine(1.0, f32::NAN).is_nan());
        assert!(ReduceOp::Max.combine(f32::NAN, 1.0).is_nan());
    }
}
