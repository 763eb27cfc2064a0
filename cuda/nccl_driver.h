// Declarations shared by nccl_driver.go and nccl_driver.c (build tag cuda):
// NCCL, loaded at run time.
#pragma once
#include <stdint.h>

// ncclUniqueId: NCCL_UNIQUE_ID_BYTES (128) opaque bytes.
typedef struct {
	char internal[128];
} kiln_nccl_id;

// Opens the library (path, e.g. "libnccl.so.2") and resolves the functions
// Kiln calls; returns NULL, or dlerror()'s message or the missing symbol.
const char* kiln_nccl_load(const char* path);

// Each returns an ncclResult_t (0: ncclSuccess). Those that take ctx make it
// current on the calling thread first and return -1 with *cu_rc set when
// that fails.
int kiln_nccl_version(int* version);
int kiln_nccl_unique_id(kiln_nccl_id* id);
int kiln_nccl_comm_init(uintptr_t ctx, uintptr_t* comm, int nranks, const kiln_nccl_id* id, int rank,
                        int* cu_rc);
int kiln_nccl_allreduce_sum_f32(uintptr_t ctx, uintptr_t stream, uintptr_t comm, uintptr_t buf, uint64_t n, int* cu_rc);
int kiln_nccl_comm_destroy(uintptr_t comm);
const char* kiln_nccl_error_string(int rc);
