package bench

import (
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/kiln-ml/kiln/cuda"
)

// MemoryStats is a process's memory as the benchmarks report it: the
// resident-set high-water mark (what the operating system had to provide at
// the worst moment, C allocations included) and the Go runtime's own figures.
type MemoryStats struct {
	RSSPeakBytes  int64 `json:"rss_peak_bytes"`    // VmHWM from /proc/self/status (0 when unknown)
	GoSysBytes    int64 `json:"go_sys_bytes"`      // memory the Go runtime obtained from the OS
	GoHeapBytes   int64 `json:"go_heap_bytes"`     // live heap objects now
	GoHeapSysPeak int64 `json:"go_heap_sys_bytes"` // heap spans obtained (the heap's high-water)
	// GPUPeakBytes is the most device memory Kiln's allocator had handed out
	// at once (cached free blocks not counted, as PyTorch's
	// max_memory_allocated); 0 when no GPU was used.
	GPUPeakBytes int64 `json:"gpu_peak_bytes,omitempty"`
}

// ProcessMemory reads this process's memory figures.
func ProcessMemory() MemoryStats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return MemoryStats{
		RSSPeakBytes: procStatusBytes("VmHWM:"),
		GoSysBytes:   int64(ms.Sys), GoHeapBytes: int64(ms.HeapAlloc), GoHeapSysPeak: int64(ms.HeapSys),
		GPUPeakBytes: cuda.Memory().Peak,
	}
}

// procStatusBytes reads a "Key: N kB" line of /proc/self/status.
func procStatusBytes(key string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == key {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
