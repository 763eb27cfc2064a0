//go:build cuda && cgo

// The C half of the driver backend (backend_driver.go): kernel launches with
// exact-sized arguments and no allocation. (The guard that keeps
// gorgonia.org/cu's package initialiser from ending the process, an
// interposed cuInit, is in cu_workarounds.go with cu's other workarounds.)

#define _GNU_SOURCE
#include <cuda.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

int kiln_cuda_stream_create(uintptr_t ctx, uintptr_t* stream) {
	CUresult rc = cuCtxSetCurrent((CUcontext)ctx);
	if (rc != CUDA_SUCCESS) return (int)rc;
	CUstream s;
	if ((rc = cuStreamCreate(&s, CU_STREAM_DEFAULT)) != CUDA_SUCCESS) return (int)rc;
	*stream = (uintptr_t)s;
	return 0;
}

int kiln_cuda_launch(uintptr_t ctx, uintptr_t stream, uintptr_t fn, unsigned gx, unsigned gy,
                     unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned shmem,
                     uint64_t* slots, int n) {
	// The goroutine that calls this may run on any OS thread: make the
	// context current here, in the same C call as the launch.
	CUresult rc = cuCtxSetCurrent((CUcontext)ctx);
	if (rc != CUDA_SUCCESS) return (int)rc;
	if (n < 0 || n > KILN_MAX_ARGS) return (int)CUDA_ERROR_INVALID_VALUE;
	// One pointer per 8-byte slot; the driver reads each at the kernel
	// parameter's own size (4 bytes for int and float: the low half of the
	// slot on this little-endian machine).
	void* params[KILN_MAX_ARGS];
	for (int i = 0; i < n; i++) params[i] = &slots[i];
	return (int)cuLaunchKernel((CUfunction)fn, gx, gy, gz, bx, by, bz, shmem, (CUstream)stream, params,
	                           (void**)0);
}

int kiln_cuda_stage_alloc(uintptr_t ctx, size_t bytes, void** host, uintptr_t* done) {
	CUresult rc = cuCtxSetCurrent((CUcontext)ctx);
	if (rc != CUDA_SUCCESS) return (int)rc;
	if ((rc = cuMemAllocHost(host, bytes)) != CUDA_SUCCESS) return (int)rc;
	CUevent e;
	if ((rc = cuEventCreate(&e, CU_EVENT_DISABLE_TIMING)) != CUDA_SUCCESS) {
		cuMemFreeHost(*host);
		*host = 0;
		return (int)rc;
	}
	*done = (uintptr_t)e;
	return 0;
}

void kiln_cuda_stage_free(uintptr_t ctx, void* host, uintptr_t done) {
	if (cuCtxSetCurrent((CUcontext)ctx) != CUDA_SUCCESS) return;
	// The last upload from host must have been read before it goes.
	cuEventSynchronize((CUevent)done);
	cuEventDestroy((CUevent)done);
	cuMemFreeHost(host);
}

int kiln_cuda_stage_upload(uintptr_t ctx, uintptr_t stream, void* host, uintptr_t done,
                           uintptr_t dst, const void* src, size_t bytes) {
	CUresult rc = cuCtxSetCurrent((CUcontext)ctx);
	if (rc != CUDA_SUCCESS) return (int)rc;
	// An event never recorded is complete: the first use does not wait.
	if ((rc = cuEventSynchronize((CUevent)done)) != CUDA_SUCCESS) return (int)rc;
	memcpy(host, src, bytes);
	if ((rc = cuMemcpyHtoDAsync((CUdeviceptr)dst, host, bytes, (CUstream)stream)) != CUDA_SUCCESS) return (int)rc;
	return (int)cuEventRecord((CUevent)done, (CUstream)stream);
}

int kiln_cuda_dtoh(uintptr_t ctx, uintptr_t stream, void* dst, uintptr_t src, size_t bytes) {
	CUresult rc = cuCtxSetCurrent((CUcontext)ctx);
	if (rc != CUDA_SUCCESS) return (int)rc;
	if ((rc = cuMemcpyDtoHAsync(dst, (CUdeviceptr)src, bytes, (CUstream)stream)) != CUDA_SUCCESS) return (int)rc;
	return (int)cuStreamSynchronize((CUstream)stream);
}

int kiln_cuda_htod(uintptr_t ctx, uintptr_t stream, uintptr_t dst, const void* src, size_t bytes) {
	CUresult rc = cuCtxSetCurrent((CUcontext)ctx);
	if (rc != CUDA_SUCCESS) return (int)rc;
	if ((rc = cuMemcpyHtoDAsync((CUdeviceptr)dst, src, bytes, (CUstream)stream)) != CUDA_SUCCESS) return (int)rc;
	return (int)cuStreamSynchronize((CUstream)stream);
}

int kiln_cuda_zero(uintptr_t ctx, uintptr_t stream, uintptr_t p, size_t bytes) {
	CUresult rc = cuCtxSetCurrent((CUcontext)ctx);
	if (rc != CUDA_SUCCESS) return (int)rc;
	return (int)cuMemsetD8Async((CUdeviceptr)p, 0, bytes, (CUstream)stream);
}

int kiln_cuda_dtod(uintptr_t ctx, uintptr_t stream, uintptr_t dst, uintptr_t src, size_t bytes) {
	CUresult rc = cuCtxSetCurrent((CUcontext)ctx);
	if (rc != CUDA_SUCCESS) return (int)rc;
	return (int)cuMemcpyDtoDAsync((CUdeviceptr)dst, (CUdeviceptr)src, bytes, (CUstream)stream);
}

// cuFuncGetParamInfo (driver API 12.4 and later) looked up at run time: the
// toolkit headers CI builds with (11.8) do not declare it. A launch with
// fewer arguments than the kernel takes makes cuLaunchKernel read past the
// parameter array and crash the process, so Launch checks the count first.
typedef CUresult (*kiln_param_info_fn)(CUfunction, size_t, size_t*, size_t*);

int kiln_cuda_param_count(uintptr_t fn) {
	static kiln_param_info_fn info;
	static int looked;
	if (!looked) {
		info = (kiln_param_info_fn)dlsym(RTLD_DEFAULT, "cuFuncGetParamInfo");
		looked = 1;
	}
	if (!info) return -1;
	size_t off, size;
	int n = 0;
	while (n <= KILN_MAX_ARGS && info((CUfunction)fn, (size_t)n, &off, &size) == CUDA_SUCCESS) n++;
	return n;
}

int kiln_cuda_event_record(uintptr_t ctx, uintptr_t stream, uintptr_t* ev) {
	CUresult rc = cuCtxSetCurrent((CUcontext)ctx);
	if (rc != CUDA_SUCCESS) return (int)rc;
	CUevent e;
	if ((rc = cuEventCreate(&e, CU_EVENT_DEFAULT)) != CUDA_SUCCESS) return (int)rc;
	if ((rc = cuEventRecord(e, (CUstream)stream)) != CUDA_SUCCESS) {
		cuEventDestroy(e);
		return (int)rc;
	}
	*ev = (uintptr_t)e;
	return 0;
}

int kiln_cuda_event_elapsed(uintptr_t ctx, uintptr_t a, uintptr_t b, float* ms) {
	CUresult rc = cuCtxSetCurrent((CUcontext)ctx);
	if (rc != CUDA_SUCCESS) return (int)rc;
	return (int)cuEventElapsedTime(ms, (CUevent)a, (CUevent)b);
}

void kiln_cuda_event_destroy(uintptr_t ctx, uintptr_t ev) {
	if (cuCtxSetCurrent((CUcontext)ctx) == CUDA_SUCCESS) cuEventDestroy((CUevent)ev);
}

const char* kiln_cuda_error_name(int rc) {
	const char* s = 0;
	if (cuGetErrorName((CUresult)rc, &s) != CUDA_SUCCESS || s == 0) return "CUDA_ERROR_UNKNOWN";
	return s;
}

const char* kiln_cuda_error_string(int rc) {
	const char* s = 0;
	if (cuGetErrorString((CUresult)rc, &s) != CUDA_SUCCESS || s == 0) return "unknown error";
	return s;
}

// The graph of a step (graph.go): built node by node rather than captured
// from the stream, so that each node's handle is kept for updates.
typedef struct {
	CUgraph g;
	CUgraphExec exec;
	int n;
	CUgraphNode nodes[];
} kiln_graph;

static void kiln_kernel_params(const kiln_graph_op* op, void** params, CUDA_KERNEL_NODE_PARAMS* p) {
	for (int i = 0; i < op->n; i++) params[i] = (void*)&op->slots[i];
	memset(p, 0, sizeof *p);
	p->func = (CUfunction)op->fn;
	p->gridDimX = op->grid[0];
	p->gridDimY = op->grid[1];
	p->gridDimZ = op->grid[2];
	p->blockDimX = op->block[0];
	p->blockDimY = op->block[1];
	p->blockDimZ = op->block[2];
	p->sharedMemBytes = op->shmem;
	p->kernelParams = params;
}

static CUresult kiln_graph_add(CUgraph g, CUcontext ctx, const kiln_graph_op* op, CUgraphNode* prev,
                               CUgraphNode* node) {
	size_t ndeps = *prev ? 1 : 0;
	if (op->kind == 0) {
		void* params[KILN_MAX_ARGS];
		CUDA_KERNEL_NODE_PARAMS p;
		if (op->n < 0 || op->n > KILN_MAX_ARGS) return CUDA_ERROR_INVALID_VALUE;
		kiln_kernel_params(op, params, &p);
		return cuGraphAddKernelNode(node, g, prev, ndeps, &p);
	}
	if (op->kind == 1) {
		CUDA_MEMSET_NODE_PARAMS p;
		memset(&p, 0, sizeof p);
		int words = op->bytes % 4 == 0 && op->dst % 4 == 0;
		p.dst = (CUdeviceptr)op->dst;
		p.elementSize = words ? 4 : 1;
		p.width = words ? op->bytes / 4 : op->bytes;
		p.height = 1;
		p.pitch = 0;
		p.value = 0;
		return cuGraphAddMemsetNode(node, g, prev, ndeps, &p, ctx);
	}
	CUDA_MEMCPY3D p;
	memset(&p, 0, sizeof p);
	p.srcMemoryType = CU_MEMORYTYPE_DEVICE;
	p.srcDevice = (CUdeviceptr)op->src;
	p.dstMemoryType = CU_MEMORYTYPE_DEVICE;
	p.dstDevice = (CUdeviceptr)op->dst;
	p.srcPitch = op->bytes;
	p.dstPitch = op->bytes;
	p.srcHeight = 1;
	p.dstHeight = 1;
	p.WidthInBytes = op->bytes;
	p.Height = 1;
	p.Depth = 1;
	return cuGraphAddMemcpyNode(node, g, prev, ndeps, &p, ctx);
}

int kiln_cuda_graph_build(uintptr_t ctx, const kiln_graph_op* ops, int n, uintptr_t* graph) {
	CUresult rc = cuCtxSetCurrent((CUcontext)ctx);
	if (rc != CUDA_SUCCESS) return (int)rc;
	kiln_graph* kg = calloc(1, sizeof *kg + (size_t)n * sizeof(CUgraphNode));
	if (!kg) return (int)CUDA_ERROR_OUT_OF_MEMORY;
	kg->n = n;
	if ((rc = cuGraphCreate(&kg->g, 0)) != CUDA_SUCCESS) {
		free(kg);
		return (int)rc;
	}
	CUgraphNode prev = 0;
	for (int i = 0; i < n && rc == CUDA_SUCCESS; i++) {
		rc = kiln_graph_add(kg->g, (CUcontext)ctx, &ops[i], &prev, &kg->nodes[i]);
		prev = kg->nodes[i];
	}
	if (rc == CUDA_SUCCESS) rc = cuGraphInstantiateWithFlags(&kg->exec, kg->g, 0);
	if (rc != CUDA_SUCCESS) {
		cuGraphDestroy(kg->g);
		free(kg);
		return (int)rc;
	}
	*graph = (uintptr_t)kg;
	return 0;
}

int kiln_cuda_graph_update(uintptr_t ctx, uintptr_t graph, int i, const kiln_graph_op* op) {
	CUresult rc = cuCtxSetCurrent((CUcontext)ctx);
	if (rc != CUDA_SUCCESS) return (int)rc;
	kiln_graph* kg = (kiln_graph*)graph;
	if (i < 0 || i >= kg->n || op->kind != 0 || op->n < 0 || op->n > KILN_MAX_ARGS) return (int)CUDA_ERROR_INVALID_VALUE;
	void* params[KILN_MAX_ARGS];
	CUDA_KERNEL_NODE_PARAMS p;
	kiln_kernel_params(op, params, &p);
	return (int)cuGraphExecKernelNodeSetParams(kg->exec, kg->nodes[i], &p);
}

int kiln_cuda_graph_launch(uintptr_t ctx, uintptr_t stream, uintptr_t graph) {
	CUresult rc = cuCtxSetCurrent((CUcontext)ctx);
	if (rc != CUDA_SUCCESS) return (int)rc;
	return (int)cuGraphLaunch(((kiln_graph*)graph)->exec, (CUstream)stream);
}

void kiln_cuda_graph_destroy(uintptr_t ctx, uintptr_t stream, uintptr_t graph) {
	kiln_graph* kg = (kiln_graph*)graph;
	if (cuCtxSetCurrent((CUcontext)ctx) == CUDA_SUCCESS) {
		// Its last launch may still run: wait for it rather than lean on
		// how the driver treats an executable graph freed in flight. A
		// graph is dropped rarely (a new plan, Release).
		cuStreamSynchronize((CUstream)stream);
		cuGraphExecDestroy(kg->exec);
		cuGraphDestroy(kg->g);
	}
	free(kg);
}
