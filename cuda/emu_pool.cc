//go:build cudaemu && !cuda

#include "emu_registry.h"
#include "../kernels/pool.cu"

KILN_EMU_KERNEL(maxpool2d_forward_f32);
KILN_EMU_KERNEL(maxpool2d_backward_f32);
KILN_EMU_KERNEL(avgpool2d_forward_f32);
KILN_EMU_KERNEL(avgpool2d_backward_f32);
KILN_EMU_KERNEL(global_avgpool_forward_f32);
KILN_EMU_KERNEL(global_avgpool_backward_f32);
KILN_EMU_KERNEL(global_maxpool_forward_f32);
KILN_EMU_KERNEL(global_maxpool_backward_f32);
KILN_EMU_KERNEL(channelpool_forward_f32);
KILN_EMU_KERNEL(channelpool_backward_f32);
KILN_EMU_KERNEL(transpose12_f32);
