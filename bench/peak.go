package bench

import (
	"runtime"
	"sync"
	"time"
)

// Peak is what this machine can do at best, measured in this run: the
// ceilings the op-level figures are compared with.
type Peak struct {
	Threads int `json:"threads"`
	// FMAGFLOPS is a register-only multiply-add loop on every thread: the
	// arithmetic ceiling.
	FMAGFLOPS float64 `json:"fma_gflops,omitempty"`
	FMAKind   string  `json:"fma_kind,omitempty"`
	FMAError  string  `json:"fma_error,omitempty"`
	// SGEMMGFLOPS is the best GEMM rate any engine reached in the op-level
	// section (Kiln's GEMM or PyTorch's OpenBLAS), SGEMMFrom says which.
	// Compute-bound ops are reported as a fraction of it.
	SGEMMGFLOPS float64 `json:"sgemm_gflops,omitempty"`
	SGEMMFrom   string  `json:"sgemm_from,omitempty"`
	// CopyGBPS is a large parallel copy, counted as bytes read plus bytes
	// written (STREAM's convention). Memory-bound ops are reported as a
	// fraction of it.
	CopyGBPS  float64 `json:"copy_gbps"`
	CopyBytes int64   `json:"copy_bytes"`
	// With --device cuda: the GPU's fp32 GEMM rate (TF32 off) and copy
	// bandwidth as PyTorch reaches them, or why they were not measured.
	GPU       string  `json:"gpu,omitempty"`
	GPUGFLOPS float64 `json:"gpu_sgemm_gflops,omitempty"`
	GPUGBPS   float64 `json:"gpu_copy_gbps,omitempty"`
	GPUError  string  `json:"gpu_error,omitempty"`
}

// measureFMA runs the FMA loop on threads OS threads at once for about dur
// and returns GFLOP/s (best of three).
func measureFMA(threads int, dur time.Duration) float64 {
	if !haveFMALoop {
		return 0
	}
	// Calibrate on one thread: iterations per second.
	iters := int64(1 << 16)
	for {
		t := time.Now()
		fmaLoop(iters)
		if el := time.Since(t); el > 5*time.Millisecond {
			iters = int64(float64(iters) * dur.Seconds() / el.Seconds())
			break
		}
		iters *= 4
	}
	best := 0.0
	for range 3 {
		var wg sync.WaitGroup
		flops := make([]float64, threads)
		start := time.Now()
		for i := range threads {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				flops[i] = fmaLoop(iters)
			}()
		}
		wg.Wait()
		el := time.Since(start).Seconds()
		total := 0.0
		for _, f := range flops {
			total += f
		}
		best = max(best, total/el/1e9)
	}
	return best
}

// measureCopy copies a buffer of `bytes` bytes with threads goroutines, each
// its own contiguous part, and returns GB/s (read + write, best of five).
func measureCopy(threads int, bytes int64) float64 {
	n := int(bytes / 4)
	src, dst := make([]float32, n), make([]float32, n)
	for i := range src {
		src[i] = float32(i)
	}
	copy(dst, src) // fault the pages in
	best := 0.0
	for range 5 {
		var wg sync.WaitGroup
		start := time.Now()
		for i := range threads {
			lo, hi := i*n/threads, (i+1)*n/threads
			wg.Add(1)
			go func() {
				defer wg.Done()
				copy(dst[lo:hi], src[lo:hi])
			}()
		}
		wg.Wait()
		best = max(best, 2*float64(n)*4/time.Since(start).Seconds()/1e9)
	}
	return best
}
