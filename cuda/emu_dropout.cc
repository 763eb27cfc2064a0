//go:build cudaemu && !cuda

#include "emu_registry.h"
#include "../kernels/dropout.cu"

KILN_EMU_KERNEL(dropout_forward_f32);
KILN_EMU_KERNEL(dropout_backward_f32);
