//go:build cudaemu && !cuda

#include "emu_registry.h"
#include "../kernels/activation.cu"

KILN_EMU_KERNEL(relu_forward_f32);
KILN_EMU_KERNEL(relu_backward_f32);
KILN_EMU_KERNEL(gelu_forward_f32);
KILN_EMU_KERNEL(gelu_backward_f32);
KILN_EMU_KERNEL(sigmoid_forward_f32);
KILN_EMU_KERNEL(sigmoid_backward_f32);
KILN_EMU_KERNEL(tanh_forward_f32);
KILN_EMU_KERNEL(tanh_backward_f32);
