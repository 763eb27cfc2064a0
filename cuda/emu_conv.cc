//go:build cudaemu && !cuda

#include "emu_registry.h"
#include "../kernels/conv.cu"

KILN_EMU_KERNEL(conv2d_forward_64x64_f32);
KILN_EMU_KERNEL(conv2d_input_grad_64x64_f32);
KILN_EMU_KERNEL(conv2d_weight_grad_64x64_f32);
KILN_EMU_KERNEL(conv2d_forward_128x128_f32);
KILN_EMU_KERNEL(conv2d_input_grad_128x128_f32);
KILN_EMU_KERNEL(conv2d_weight_grad_128x128_f32);
KILN_EMU_KERNEL(conv2d_forward_64x64_tf32);
KILN_EMU_KERNEL(conv2d_input_grad_64x64_tf32);
KILN_EMU_KERNEL(conv2d_weight_grad_64x64_tf32);
KILN_EMU_KERNEL(conv2d_forward_128x128_tf32);
KILN_EMU_KERNEL(conv2d_input_grad_128x128_tf32);
KILN_EMU_KERNEL(conv2d_weight_grad_128x128_tf32);
KILN_EMU_KERNEL(conv2d_bias_grad_f32);
