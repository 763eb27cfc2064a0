// Package engine holds Kiln's tensors and its ops, and is the one place where
// each op is dispatched to a backend.
//
// # Tensors
//
// A Tensor is a shape, a dtype (Float32 for training, Float64 for the
// finite-difference gradient checks that verify every op) and a device. On the
// CPU its data is a flat, row-major slice that the hot loops use directly.
// gorgonia.org/tensor's *tensor.Dense is the host tensor type at Kiln's public
// edges (model inputs and outputs, data sets, weight import and export);
// FromDense and (*Tensor).Dense convert without surprises.
//
// # Op conventions (from llm.c)
//
//   - XForward(out, inputs…, params) and XBackward(dinputs…, dparams…, dout,
//     inputs…, params): outputs come first. Every argument's shape is written
//     beside it, e.g. x: (N,C,H,W).
//   - Activation gradients are overwritten (dx = …); parameter gradients are
//     accumulated (dw += …), so two backward passes give twice the gradient and
//     zeroing gradients is the optimiser's business. Any gradient output may be
//     nil when the caller does not need it.
//   - The caller allocates outputs with the right shape (each family exports a
//     helper that computes it); ops never allocate in steady state, so a
//     training step makes no garbage.
//   - Every op checks shapes, dtypes and devices first and returns a
//     *ShapeError naming the op and the shapes it was given. The public API
//     returns errors; it does not panic.
//
// # Dispatch
//
// Each op switches once on its tensors' device. The CPU backend is the
// reference: generic Go code instantiated for float32 and float64, the
// instantiation picked once per call from the dtype (pick, in dispatch.go),
// with the float32 matrix multiply in C (AVX2/FMA) because everything heavy
// reduces to it. A family X whose float32 loops also need C has them in
// X_cpu.c, called from X_cpu_cgo.go (cgo on amd64) with X_cpu_nocgo.go as its
// stand-in elsewhere. A tensor on a device whose kernel is missing is an
// error, never a silent trip to the CPU.
//
// # Determinism
//
// CPU results depend only on the inputs: work is split into a fixed number of
// parts that do not depend on timing, and partial sums are combined in a fixed
// order, so the same seed gives bit-identical results run after run.
package engine
