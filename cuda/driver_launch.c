//go:build cuda && cgo

// The C half of the driver backend (backend_driver.go): kernel launches with
// exact-sized arguments and no allocation. (The guard that keeps
// gorgonia.org/cu's package initialiser from ending the process, an
// interposed cuInit, is in cu_workarounds.go with cu's other workarounds.)

#define _GNU_SOURCE
#include <cuda.h>
#include <dlfcn.h>
#include <stdint.h>
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
