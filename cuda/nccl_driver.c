//go:build cuda && cgo

// The C half of nccl_driver.go: NCCL through dlopen, so that neither build
// needs NCCL to link or start; only a data-parallel run on GPUs loads it.
// The types and constants are NCCL's public ABI (nccl.h, stable since 2.0).

#define _GNU_SOURCE
#include <cuda.h>
#include <dlfcn.h>
#include <stddef.h>

#include "nccl_driver.h"

enum { ncclFloat32 = 7, ncclSum = 0 };

static void* lib;
static int (*get_version)(int*);
static int (*get_unique_id)(kiln_nccl_id*);
static int (*comm_init_rank)(void**, int, kiln_nccl_id, int);
static int (*all_reduce)(const void*, void*, size_t, int, int, void*, void*);
static int (*comm_destroy)(void*);
static const char* (*get_error_string)(int);

#define RESOLVE(var, name)                                                                      \
	do {                                                                                    \
		*(void**)(&var) = dlsym(h, name);                                               \
		if (var == NULL) {                                                              \
			dlclose(h);                                                             \
			return "the library has no " name;                                     \
		}                                                                               \
	} while (0)

const char* kiln_nccl_load(const char* path) {
	if (lib != NULL) {
		return NULL;
	}
	void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		const char* e = dlerror();
		return e ? e : "dlopen failed";
	}
	RESOLVE(get_version, "ncclGetVersion");
	RESOLVE(get_unique_id, "ncclGetUniqueId");
	RESOLVE(comm_init_rank, "ncclCommInitRank");
	RESOLVE(all_reduce, "ncclAllReduce");
	RESOLVE(comm_destroy, "ncclCommDestroy");
	RESOLVE(get_error_string, "ncclGetErrorString");
	lib = h;
	return NULL;
}

int kiln_nccl_version(int* version) { return get_version(version); }

int kiln_nccl_unique_id(kiln_nccl_id* id) { return get_unique_id(id); }

// NCCL uses the CUDA runtime, which takes the device from the context
// current on the thread: ours, made current in the same C call.
int kiln_nccl_comm_init(uintptr_t ctx, uintptr_t* comm, int nranks, const kiln_nccl_id* id, int rank,
                        int* cu_rc) {
	*cu_rc = cuCtxSetCurrent((CUcontext)ctx);
	if (*cu_rc != CUDA_SUCCESS) {
		return -1;
	}
	void* c = NULL;
	int rc = comm_init_rank(&c, nranks, *id, rank);
	*comm = (uintptr_t)c;
	return rc;
}

// On Kiln's stream, as every kernel launch: the optimiser's kernels that
// follow wait for the sum.
int kiln_nccl_allreduce_sum_f32(uintptr_t ctx, uintptr_t stream, uintptr_t comm, uintptr_t buf, uint64_t n, int* cu_rc) {
	*cu_rc = cuCtxSetCurrent((CUcontext)ctx);
	if (*cu_rc != CUDA_SUCCESS) {
		return -1;
	}
	return all_reduce((const void*)buf, (void*)buf, (size_t)n, ncclFloat32, ncclSum, (void*)comm, (void*)stream);
}

int kiln_nccl_comm_destroy(uintptr_t comm) { return comm_destroy((void*)comm); }

const char* kiln_nccl_error_string(int rc) { return get_error_string(rc); }
