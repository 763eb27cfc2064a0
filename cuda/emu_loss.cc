//go:build cudaemu && !cuda

#include "emu_registry.h"
#include "../kernels/loss.cu"

KILN_EMU_KERNEL(softmax_xent_forward_f32);
KILN_EMU_KERNEL(softmax_xent_backward_f32);
KILN_EMU_KERNEL(mse_forward_f32);
KILN_EMU_KERNEL(l1_forward_f32);
KILN_EMU_KERNEL(mse_backward_f32);
KILN_EMU_KERNEL(l1_backward_f32);
