package bench

import (
	"testing"
	"time"
)

func TestPeakMeasuresSomething(t *testing.T) {
	if !haveFMALoop {
		t.Skip("built without cgo: no FMA loop")
	}
	g := measureFMA(1, 20*time.Millisecond)
	// Any CPU this runs on does more than 0.5 GFLOP/s on one core and no
	// core does 1000.
	if g < 0.5 || g > 1000 {
		t.Fatalf("FMA loop: %v GFLOP/s on one thread", g)
	}
	t.Logf("FMA loop %.1f GFLOP/s on one thread (%s)", g, fmaKind())
	bw := measureCopy(1, 8<<20)
	if bw < 0.1 || bw > 10000 {
		t.Fatalf("copy: %v GB/s", bw)
	}
	t.Logf("copy %.1f GB/s", bw)
}
