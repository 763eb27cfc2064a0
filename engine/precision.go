package engine

import (
	"fmt"
	"strings"

	"golang.org/x/sys/cpu"
)

// Precision is what the matrix products of convolution, Linear and the SGU's
// token mixing compute in, as PyTorch's autocast: the inputs of each product
// are rounded to it and the products are summed in float32. Everything else
// (norms, softmax, losses, reductions, the optimiser and the parameters
// themselves) stays float32 whatever the precision.
//
// A weight tensor carries the precision of the products it takes part in
// (Tensor.SetPrecision), so two models in one process (tune's parallel
// trials) can differ.
type Precision uint8

const (
	// FP32 multiplies in float32: the default, and the reference.
	FP32 Precision = iota
	// TF32 rounds the inputs to TF32 (10 mantissa bits) on the GPU's tensor
	// cores; the CPU has no TF32.
	TF32
	// BF16 rounds the inputs to bfloat16 (7 mantissa bits) and sums in
	// float32: AVX512_BF16 or AMX on the CPU, tensor cores on the GPU.
	BF16
)

var precisionNames = [...]string{FP32: "fp32", TF32: "tf32", BF16: "bf16"}

func (p Precision) String() string {
	if int(p) < len(precisionNames) {
		return precisionNames[p]
	}
	return fmt.Sprintf("Precision(%d)", uint8(p))
}

// ParsePrecision reads "fp32", "tf32" or "bf16" ("" is fp32).
func ParsePrecision(s string) (Precision, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "fp32", "float32", "":
		return FP32, nil
	case "tf32":
		return TF32, nil
	case "bf16", "bfloat16":
		return BF16, nil
	}
	return FP32, fmt.Errorf("unknown precision %q (want fp32, tf32 or bf16)", s)
}

// Precisions lists the precisions dev computes in, in this build and on this
// machine.
func Precisions(dev Device) []Precision {
	var ps []Precision
	for p := range Precision(len(precisionNames)) {
		if p.Check(dev) == nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// Check says why dev cannot compute in p, or nil when it can. It never
// falls back: a run asked for bf16 on a machine without it is refused.
func (p Precision) Check(dev Device) error {
	switch {
	case p == FP32:
		return nil
	case int(p) >= len(precisionNames):
		return fmt.Errorf("unknown precision %v", p)
	case dev == CUDA:
		return nil // tensor cores on sm_80+ (the fatbin's only targets); the emulator emulates mma.sync
	case p == TF32:
		return fmt.Errorf("precision tf32 is not available on the cpu: TF32 is a GPU tensor-core format " +
			"(use fp32, or bf16 on a CPU with AVX512_BF16)")
	case !CPUHasBF16() && CPUISA() != "avx512" && cpu.X86.HasAVX512BF16:
		return fmt.Errorf("precision bf16 is not available on the cpu at ISA level %s: "+
			"its products need the avx512 level (KILN_CPU_ISA forces %s)", CPUISA(), CPUISA())
	case !CPUHasBF16():
		return fmt.Errorf("precision bf16 is not available on this cpu: it has neither AVX512_BF16 nor AMX")
	}
	return nil
}

// SetPrecision sets the precision of the matrix products t takes part in as
// a weight (Conv2D, Linear, the SGU's token mixing); FP32 by default. The
// caller checks p against the device first (Precision.Check): a product
// whose device cannot compute in p returns that error.
func (t *Tensor) SetPrecision(p Precision) { t.prec = p }

// Precision is the precision set by SetPrecision.
func (t *Tensor) Precision() Precision { return t.prec }

// checkPrecision is the products' guard: w's precision on dev, or its error
// named after op.
func checkPrecision(op string, w *Tensor) (Precision, error) {
	if w == nil || w.prec == FP32 {
		return FP32, nil
	}
	if err := w.prec.Check(w.device); err != nil {
		return FP32, fmt.Errorf("%s: %w", op, err)
	}
	if w.dtype != Float32 {
		return FP32, fmt.Errorf("%s: precision %v needs float32 tensors, not %v", op, w.prec, w.dtype)
	}
	return w.prec, nil
}
