//go:build cudaemu && !cuda

#include "emu_registry.h"
#include "../kernels/tensor.cu"

KILN_EMU_KERNEL(concat_forward_f32);
KILN_EMU_KERNEL(concat_backward_f32);
KILN_EMU_KERNEL(broadcast_mul_forward_f32);
KILN_EMU_KERNEL(broadcast_mul_backward_f32);
