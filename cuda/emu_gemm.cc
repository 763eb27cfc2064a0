//go:build cudaemu && !cuda

#include "emu_registry.h"
#include "../kernels/gemm.cu"

KILN_EMU_KERNEL(gemm_nn_64x64_f32);
KILN_EMU_KERNEL(gemm_nt_64x64_f32);
KILN_EMU_KERNEL(gemm_tn_64x64_f32);
KILN_EMU_KERNEL(gemm_tt_64x64_f32);
KILN_EMU_KERNEL(gemm_nn_128x128_f32);
KILN_EMU_KERNEL(gemm_nt_128x128_f32);
KILN_EMU_KERNEL(gemm_tn_128x128_f32);
KILN_EMU_KERNEL(gemm_tt_128x128_f32);
KILN_EMU_KERNEL(gemm_nn_64x64_tf32);
KILN_EMU_KERNEL(gemm_nt_64x64_tf32);
KILN_EMU_KERNEL(gemm_tn_64x64_tf32);
KILN_EMU_KERNEL(gemm_tt_64x64_tf32);
KILN_EMU_KERNEL(gemm_nn_128x128_tf32);
KILN_EMU_KERNEL(gemm_nt_128x128_tf32);
KILN_EMU_KERNEL(gemm_tn_128x128_tf32);
KILN_EMU_KERNEL(gemm_tt_128x128_tf32);
KILN_EMU_KERNEL(gemm_splitk_reduce_f32);
KILN_EMU_KERNEL(linear_bias_add_f32);
KILN_EMU_KERNEL(linear_bias_grad_f32);
