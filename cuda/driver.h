// Declarations shared by backend_driver.go and driver_launch.c (build tag
// cuda): the C half of the real-GPU backend.
#pragma once
#include <stdint.h>

// The most kernel arguments one launch packs (cuda.maxArgs on the Go side).
#define KILN_MAX_ARGS 24

// The result of the driver's cuInit(0), made once (a CUresult): the
// interposed cuInit of cu_workarounds.go keeps it.
int kiln_cuda_init_result(void);

// cuLaunchKernel on the legacy default stream with ctx made current on the
// calling thread; slots holds n arguments of 8 bytes each. Returns a CUresult.
int kiln_cuda_launch(uintptr_t ctx, uintptr_t fn, unsigned gx, unsigned gy, unsigned gz,
                     unsigned bx, unsigned by, unsigned bz, unsigned shmem, uint64_t* slots,
                     int n);

// The number of parameters kernel fn takes, or -1 where the driver cannot
// say (cuFuncGetParamInfo arrived with CUDA 12.4).
int kiln_cuda_param_count(uintptr_t fn);

// A CUDA event created and recorded on the launch stream (the profiler's
// marks), the milliseconds between two recorded events once the stream has
// passed both, and an event's end. Each makes ctx current first.
int kiln_cuda_event_record(uintptr_t ctx, uintptr_t* ev);
int kiln_cuda_event_elapsed(uintptr_t ctx, uintptr_t a, uintptr_t b, float* ms);
void kiln_cuda_event_destroy(uintptr_t ctx, uintptr_t ev);

const char* kiln_cuda_error_name(int rc);
const char* kiln_cuda_error_string(int rc);
