package bench

import "testing"

func TestProcessMemoryReadsTheHighWaterMark(t *testing.T) {
	m := ProcessMemory()
	if m.RSSPeakBytes < 1<<20 || m.GoSysBytes < 1<<20 || m.GoHeapBytes <= 0 {
		t.Fatalf("implausible memory figures %+v", m)
	}
}
