// common.cuh is included first by every kernel file. Under nvcc it is CUDA;
// under g++ (make test-kernels, go test -tags cudaemu) it pulls in the
// emulation header, so the same source runs on the CPU.
//
// Conventions for kernel files (kernels/<family>.cu, launched from
// engine/<family>_cuda.go):
//   - every kernel is `extern "C" __global__` with a name that says its op and
//     dtype (maxpool2d_forward_f32), so the Go side finds it by name;
//   - that name is written out in full where the kernel is defined, as
//     `KILN_KERNEL name(` or as the first argument of a KILN_<X>_KERNEL(name,
//     ...) macro: internal/kernelgen reads it there and writes the engine's
//     declaration and the emulator's registration (go generate ./engine);
//   - arguments are device pointers, int (32-bit) sizes and float scalars, in
//     the order the Go launcher packs them (engine/*_cuda.go);
//   - a grid-stride loop or an explicit bounds check in every kernel: grids are
//     rounded up, and the emulator runs under AddressSanitizer;
//   - no early `return` before a __syncthreads() (the emulator would deadlock,
//     the GPU would be undefined);
//   - min/max on mixed int types need casts (std::min under the emulator).
#pragma once
#ifdef __CUDACC__
#define KILN_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#else
#include "cuda_emu.h"
#endif

#define KILN_KERNEL extern "C" __global__ void

// Grid-stride loop over [0, n).
#define KILN_FOR(i, n)                                                          \
	for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)(n); \
	     i += (long long)blockDim.x * gridDim.x)

// 128-bit loads and stores of four floats; p must be 16-byte aligned (the
// emulator aborts on one that is not, as the GPU would fault).
__device__ __forceinline__ float4 kiln_ld4(const float* p) {
#ifdef KILN_EMU
	kiln_emu_check_align16(p);
#endif
	return *reinterpret_cast<const float4*>(p);
}
__device__ __forceinline__ void kiln_st4(float* p, float4 v) {
#ifdef KILN_EMU
	kiln_emu_check_align16(p);
#endif
	*reinterpret_cast<float4*>(p) = v;
}

// Whether every non-null pointer is 16-byte aligned: a kernel may then take
// its elements four at a time (with n a multiple of 4).
__device__ __forceinline__ bool kiln_aligned16(const void* a, const void* b = nullptr, const void* c = nullptr,
                                              const void* d = nullptr) {
	return ((reinterpret_cast<size_t>(a) | reinterpret_cast<size_t>(b) | reinterpret_cast<size_t>(c) |
	         reinterpret_cast<size_t>(d)) &
	        15) == 0;
}

// Sum of v over a warp, every lane gets the total.
__device__ __forceinline__ float kiln_warp_sum(float v) {
	for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}
__device__ __forceinline__ float kiln_warp_max(float v) {
	for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

// Round to bfloat16 and widen back, exactly engine.ToBF16 (bf16.go): round
// to nearest even; a zero or denormal gives a zero of its sign; an infinity
// stays; a NaN keeps its sign and upper payload and is made quiet. Integer
// arithmetic, so the GPU, the emulator and the CPU give the same bits.
__device__ __forceinline__ float kiln_to_bf16(float x) {
	unsigned int u = __float_as_uint(x), e = u & 0x7f800000u;
	if (e == 0) return __uint_as_float(u & 0x80000000u);
	if (e == 0x7f800000u) return __uint_as_float((u & 0x7fffffu) ? (u | 0x400000u) & 0xffff0000u : u);
	return __uint_as_float((u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u);
}
