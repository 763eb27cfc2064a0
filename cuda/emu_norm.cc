//go:build cudaemu && !cuda

#include "emu_registry.h"
#include "../kernels/norm.cu"

KILN_EMU_KERNEL(layernorm_forward_f32);
KILN_EMU_KERNEL(layernorm_backward_dx_f32);
KILN_EMU_KERNEL(layernorm_backward_params_f32);
KILN_EMU_KERNEL(norm_partials_add_f32);
KILN_EMU_KERNEL(batchnorm_stats_f32);
KILN_EMU_KERNEL(batchnorm_stats_finalize_f32);
KILN_EMU_KERNEL(batchnorm_eval_coef_f32);
KILN_EMU_KERNEL(batchnorm_apply_f32);
KILN_EMU_KERNEL(batchnorm_backward_reduce_f32);
KILN_EMU_KERNEL(batchnorm_backward_finalize_f32);
KILN_EMU_KERNEL(batchnorm_backward_apply_f32);
