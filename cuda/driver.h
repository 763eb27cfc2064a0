// Declarations shared by backend_driver.go and driver_launch.c (build tag
// cuda): the C half of the real-GPU backend.
#pragma once
#include <stdint.h>

// The most kernel arguments one launch packs (cuda.maxArgs on the Go side).
#define KILN_MAX_ARGS 24

// The result of the driver's cuInit(0), made once (a CUresult): the
// interposed cuInit of cu_workarounds.go keeps it.
int kiln_cuda_init_result(void);

// The stream every launch, memset, device copy and staged upload goes on:
// created blocking (CU_STREAM_DEFAULT), so that the legacy stream's
// synchronous calls (cuMemcpyDtoH, large uploads, NCCL) stay ordered with it.
int kiln_cuda_stream_create(uintptr_t ctx, uintptr_t* stream);

// cuLaunchKernel on stream with ctx made current on the calling thread;
// slots holds n arguments of 8 bytes each. Returns a CUresult.
int kiln_cuda_launch(uintptr_t ctx, uintptr_t stream, uintptr_t fn, unsigned gx, unsigned gy,
                     unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned shmem,
                     uint64_t* slots, int n);

// A staging buffer of pinned host memory and the event that says when the
// device has read it (kiln_cuda_stage_upload).
int kiln_cuda_stage_alloc(uintptr_t ctx, size_t bytes, void** host, uintptr_t* done);
void kiln_cuda_stage_free(uintptr_t ctx, void* host, uintptr_t done);

// An upload that does not wait for the device: it waits for the staging
// buffer's previous upload to be read (done), copies src into it, queues the
// copy to dst on stream and records done after it. src may be reused on
// return.
int kiln_cuda_stage_upload(uintptr_t ctx, uintptr_t stream, void* host, uintptr_t done,
                           uintptr_t dst, const void* src, size_t bytes);

// A copy to pageable host memory (dtoh) or from it (htod) queued on stream,
// returning once it is done.
int kiln_cuda_dtoh(uintptr_t ctx, uintptr_t stream, void* dst, uintptr_t src, size_t bytes);
int kiln_cuda_htod(uintptr_t ctx, uintptr_t stream, uintptr_t dst, const void* src, size_t bytes);

// cuMemsetD8Async(p, 0) and cuMemcpyDtoDAsync on stream.
int kiln_cuda_zero(uintptr_t ctx, uintptr_t stream, uintptr_t p, size_t bytes);
int kiln_cuda_dtod(uintptr_t ctx, uintptr_t stream, uintptr_t dst, uintptr_t src, size_t bytes);

// The number of parameters kernel fn takes, or -1 where the driver cannot
// say (cuFuncGetParamInfo arrived with CUDA 12.4).
int kiln_cuda_param_count(uintptr_t fn);

// A CUDA event created and recorded on the launch stream (the profiler's
// marks), the milliseconds between two recorded events once the stream has
// passed both, and an event's end. Each makes ctx current first.
int kiln_cuda_event_record(uintptr_t ctx, uintptr_t stream, uintptr_t* ev);
int kiln_cuda_event_elapsed(uintptr_t ctx, uintptr_t a, uintptr_t b, float* ms);
void kiln_cuda_event_destroy(uintptr_t ctx, uintptr_t ev);

const char* kiln_cuda_error_name(int rc);
const char* kiln_cuda_error_string(int rc);

// A step's operations as graph.go records them: a launch (kind 0), a memset
// to zero (1) or a device copy (2).
typedef struct {
	int kind;
	int n;
	uintptr_t fn;
	unsigned grid[3], block[3], shmem;
	uint64_t slots[KILN_MAX_ARGS];
	uintptr_t dst, src;
	size_t bytes;
} kiln_graph_op;

// A graph of n operations, each node depending on the one before, built and
// instantiated (*graph is Kiln's handle); node i's kernel given op's
// grid and arguments; the graph launched on stream; and freed.
int kiln_cuda_graph_build(uintptr_t ctx, const kiln_graph_op* ops, int n, uintptr_t* graph);
int kiln_cuda_graph_update(uintptr_t ctx, uintptr_t graph, int i, const kiln_graph_op* op);
int kiln_cuda_graph_launch(uintptr_t ctx, uintptr_t stream, uintptr_t graph);
void kiln_cuda_graph_destroy(uintptr_t ctx, uintptr_t stream, uintptr_t graph);
