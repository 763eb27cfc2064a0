//go:build cudaemu && !cuda

#include "emu_registry.h"
#include "../kernels/gating.cu"

KILN_EMU_KERNEL(sgu_mix_forward_f32);
KILN_EMU_KERNEL(sgu_mix_backward_f32);
KILN_EMU_KERNEL(sgu_gate_backward_f32);
KILN_EMU_KERNEL(sgu_weight_grad_f32);
