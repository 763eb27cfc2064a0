// cuda_emu.h runs Kiln's CUDA kernel sources on the CPU, compiled by g++.
//
// The model is the simplest one that keeps CUDA's semantics for the code we
// write: the blocks of a launch run one after another; the threads of a block
// are OS threads (one per CUDA thread, reused from block to block);
// __syncthreads() is a barrier of the block's threads; a warp's threads meet at
// a warp barrier to exchange values for shuffles and votes; __shared__
// variables are static, which is one copy per block because only one block
// runs at a time. Device memory is ordinary heap memory, so AddressSanitizer
// sees a kernel that reads or writes past a buffer.
//
// It is slow (a thread switch per barrier) and meant for small, awkward shapes
// in tests. Inline PTX sits behind #ifdef __CUDA_ARCH__; the tensor-core
// products it issues are emulated here on the same fragment registers, a
// warp's lanes exchanging them through kiln_emu_warp_table.
#pragma once
#ifdef __CUDACC__
#error "cuda_emu.h is for g++ only; nvcc uses the real CUDA headers"
#endif

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#define KILN_EMU 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __shared__ static

struct dim3 {
	unsigned int x = 1, y = 1, z = 1;
};
typedef dim3 uint3;

// One launch at a time (the Go side serialises launches, as one stream does).
struct KilnEmuLaunch {
	dim3 grid, block;
	unsigned int nthreads;
	void* dynamic_shared;
	std::barrier<>* block_barrier;
	std::barrier<>** warp_barriers;   // one per warp
	uint64_t* warp_exchange;          // 32 slots per warp
	unsigned int* warp_vote;          // one per warp
	uint32_t* warp_table;             // 32 lanes × KILN_EMU_WARP_REGS per warp (kiln_emu_warp_table)
};

// Registers a lane may publish to kiln_emu_warp_table.
static constexpr int KILN_EMU_WARP_REGS = 64;

inline KilnEmuLaunch* kiln_emu_current = nullptr;
inline thread_local dim3 threadIdx;
inline thread_local dim3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;
static constexpr int warpSize = 32;

inline unsigned int kiln_emu_linear_tid() {
	return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}

inline void __syncthreads() { kiln_emu_current->block_barrier->arrive_and_wait(); }
inline void __syncwarp(unsigned int = 0xffffffffu) {
	kiln_emu_current->warp_barriers[kiln_emu_linear_tid() / 32]->arrive_and_wait();
}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// Dynamic shared memory: declare it with KILN_DYNAMIC_SHARED(type, name);
// under nvcc that is `extern __shared__ type name[]`.
#define KILN_DYNAMIC_SHARED(T, name) T* name = static_cast<T*>(kiln_emu_current->dynamic_shared)

// Warp exchange: every lane of the warp (all active, full mask) writes its
// value, the warp meets, each lane reads its source lane, the warp meets again
// so that the slots can be reused.
template <typename T>
inline T kiln_emu_exchange(T v, int src) {
	static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
	unsigned int tid = kiln_emu_linear_tid();
	unsigned int warp = tid / 32, lane = tid % 32;
	uint64_t* slots = kiln_emu_current->warp_exchange + 32 * warp;
	uint64_t bits = 0;
	std::memcpy(&bits, &v, sizeof(T));
	slots[lane] = bits;
	__syncwarp();
	unsigned int first = warp * 32;
	unsigned int in_warp = std::min(32u, kiln_emu_current->nthreads - first);
	T out = v;
	if (src >= 0 && static_cast<unsigned int>(src) < in_warp) std::memcpy(&out, &slots[src], sizeof(T));
	__syncwarp();
	return out;
}

inline int kiln_emu_lane() { return static_cast<int>(kiln_emu_linear_tid() % 32); }

// Warp-collective matrix instructions (mma.sync, ldmatrix) read registers
// of every lane. kiln_emu_warp_table publishes this lane's n registers
// (n ≤ KILN_EMU_WARP_REGS), the warp meets, and the table it returns holds
// lane L's register r at [L·n + r], for every lane to read until it calls
// kiln_emu_warp_table_done() (the warp meets again, so that the table can be
// written anew). As on the GPU, the whole warp must take part.
inline const uint32_t* kiln_emu_warp_table(const uint32_t* v, int n) {
	unsigned int tid = kiln_emu_linear_tid(), warp = tid / 32;
	if (n > KILN_EMU_WARP_REGS || kiln_emu_current->nthreads < 32 * (warp + 1)) {
		std::fprintf(stderr, "kiln emulator: a warp-wide matrix op needs a full warp and at most %d registers\n",
		             KILN_EMU_WARP_REGS);
		std::abort();
	}
	uint32_t* table = kiln_emu_current->warp_table + warp * 32 * KILN_EMU_WARP_REGS;
	std::memcpy(table + (tid % 32) * n, v, n * sizeof(uint32_t));
	__syncwarp();
	return table;
}
inline void kiln_emu_warp_table_done() { __syncwarp(); }

template <typename T>
inline T __shfl_sync(unsigned int, T v, int src, int width = 32) {
	int lane = kiln_emu_lane();
	return kiln_emu_exchange(v, (lane / width) * width + (src % width));
}
template <typename T>
inline T __shfl_down_sync(unsigned int, T v, unsigned int delta, int width = 32) {
	int lane = kiln_emu_lane();
	int src = lane + static_cast<int>(delta);
	if (src / width != lane / width) src = lane;  // out of the segment: own value
	return kiln_emu_exchange(v, src);
}
template <typename T>
inline T __shfl_up_sync(unsigned int, T v, unsigned int delta, int width = 32) {
	int lane = kiln_emu_lane();
	int src = lane - static_cast<int>(delta);
	if (src < 0 || src / width != lane / width) src = lane;
	return kiln_emu_exchange(v, src);
}
template <typename T>
inline T __shfl_xor_sync(unsigned int, T v, int mask, int width = 32) {
	int lane = kiln_emu_lane();
	int src = lane ^ mask;
	if (src / width != lane / width) src = lane;
	return kiln_emu_exchange(v, src);
}

inline unsigned int __ballot_sync(unsigned int, int pred) {
	unsigned int tid = kiln_emu_linear_tid();
	unsigned int* vote = kiln_emu_current->warp_vote + tid / 32;
	__syncwarp();
	if (tid % 32 == 0) *vote = 0;
	__syncwarp();
	if (pred) __atomic_fetch_or(vote, 1u << (tid % 32), __ATOMIC_SEQ_CST);
	__syncwarp();
	unsigned int out = *vote;
	__syncwarp();
	return out;
}
inline int __any_sync(unsigned int m, int pred) { return __ballot_sync(m, pred) != 0; }
inline int __all_sync(unsigned int m, int pred) {
	unsigned int tid = kiln_emu_linear_tid();
	unsigned int first = (tid / 32) * 32;
	unsigned int in_warp = std::min(32u, kiln_emu_current->nthreads - first);
	unsigned int full = in_warp == 32 ? 0xffffffffu : ((1u << in_warp) - 1);
	return __ballot_sync(m, pred) == full;
}

// Atomics on device memory.
template <typename T>
inline T atomicAdd(T* p, T v) {
	return std::atomic_ref<T>(*p).fetch_add(v);
}
inline float atomicMax(float* p, float v) {
	std::atomic_ref<float> a(*p);
	float old = a.load();
	while (old < v && !a.compare_exchange_weak(old, v)) {
	}
	return old;
}
template <typename T>
inline T atomicMax(T* p, T v) {
	std::atomic_ref<T> a(*p);
	T old = a.load();
	while (old < v && !a.compare_exchange_weak(old, v)) {
	}
	return old;
}
template <typename T>
inline T atomicMin(T* p, T v) {
	std::atomic_ref<T> a(*p);
	T old = a.load();
	while (old > v && !a.compare_exchange_weak(old, v)) {
	}
	return old;
}
template <typename T>
inline T atomicExch(T* p, T v) {
	return std::atomic_ref<T>(*p).exchange(v);
}
template <typename T>
inline T atomicCAS(T* p, T cmp, T v) {
	std::atomic_ref<T>(*p).compare_exchange_strong(cmp, v);
	return cmp;
}

// Device intrinsics with host equivalents.
template <typename T>
inline T __ldg(const T* p) { return *p; }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
// Round-to-nearest add, multiply and divide that the compiler may not fuse into an
// FMA (g++ in ISO C++ mode contracts nothing).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __saturatef(float x) { return x < 0 ? 0 : (x > 1 ? 1 : x); }
inline float __int_as_float(int v) { float f; std::memcpy(&f, &v, 4); return f; }
inline int __float_as_int(float f) { int v; std::memcpy(&v, &f, 4); return v; }
inline unsigned int __float_as_uint(float f) { unsigned int v; std::memcpy(&v, &f, 4); return v; }
inline float __uint_as_float(unsigned int v) { float f; std::memcpy(&f, &v, 4); return f; }
inline unsigned int __umulhi(unsigned int a, unsigned int b) {
	return static_cast<unsigned int>((static_cast<uint64_t>(a) * b) >> 32);
}
inline int __popc(unsigned int v) { return __builtin_popcount(v); }
inline int __ffs(int v) { return __builtin_ffs(v); }
inline int __clz(int v) { return v == 0 ? 32 : __builtin_clz(static_cast<unsigned int>(v)); }
using std::max;
using std::min;

struct float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };

// A 128-bit access on a GPU faults (misaligned address) unless it is 16-byte
// aligned; x86 does not care, so the emulator checks for it.
inline void kiln_emu_check_align16(const void* p) {
	if (reinterpret_cast<uintptr_t>(p) % 16 != 0) {
		std::fprintf(stderr, "kiln emulator: misaligned 128-bit access at %p\n", p);
		std::abort();
	}
}
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
