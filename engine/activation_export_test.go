package engine

// ActivationsInC reports whether float32 activations run activation_cpu.c
// (x86 with cgo), not the portable Go loops, whose GELU derivative kept by
// GELUForwardDeriv is rounded to float32 once more than the backward's.
func ActivationsInC() bool { return geluDerivC([]float32{0}, []float32{0}, []float32{0}, true) }
