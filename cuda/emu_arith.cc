//go:build cudaemu && !cuda

#include "emu_registry.h"
#include "../kernels/arith.cu"

KILN_EMU_KERNEL(fill_f32);
KILN_EMU_KERNEL(add_f32);
KILN_EMU_KERNEL(scale_f32);
KILN_EMU_KERNEL(axpy_f32);
KILN_EMU_KERNEL(sum_squares_f32);
KILN_EMU_KERNEL(gather_rows_f32);
