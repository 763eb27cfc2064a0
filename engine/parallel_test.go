package engine

import (
	"testing"
)

type sumTask struct {
	x       []float64
	partial []float64
}

func (s *sumTask) run(part, lo, hi int) {
	for _, v := range s.x[lo:hi] {
		s.partial[part] += v
	}
}

var sumTasks = taskPool{New: func() any { return new(sumTask) }}

func TestParallelForCoversEveryIndexOnceWithoutAllocating(t *testing.T) {
	x := make([]float64, 1001)
	for i := range x {
		x[i] = float64(i)
	}
	partial := make([]float64, 64)
	run := func() {
		task := sumTasks.Get().(*sumTask)
		task.x, task.partial = x, partial
		clear(partial)
		parallelFor(len(x), task)
		sumTasks.Put(task)
	}
	run()
	total := 0.0
	for _, v := range partial {
		total += v
	}
	if total != 1000*1001/2 {
		t.Fatalf("sum %v, want %v", total, 1000*1001/2)
	}
	if a := testing.AllocsPerRun(100, run); a != 0 {
		t.Fatalf("parallelFor allocates %v times per call", a)
	}
}
