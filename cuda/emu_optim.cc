//go:build cudaemu && !cuda

#include "emu_registry.h"
#include "../kernels/optim.cu"

KILN_EMU_KERNEL(sgd_step_f32);
KILN_EMU_KERNEL(adamw_step_f32);
