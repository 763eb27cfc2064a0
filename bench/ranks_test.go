package bench

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-ml/kiln/layers"
)

// chanWorld is a world of goroutines, one per rank, for the data-parallel
// step timing without MPI: every collective waits for all ranks.
type chanWorld struct {
	rank int
	g    *chanGroup
}

type chanGroup struct {
	n     int
	mu    sync.Mutex
	cond  *sync.Cond
	slots []any
	round int
	count int
}

func newChanWorlds(n int) []chanWorld {
	g := &chanGroup{n: n, slots: make([]any, n)}
	g.cond = sync.NewCond(&g.mu)
	ws := make([]chanWorld, n)
	for r := range ws {
		ws[r] = chanWorld{r, g}
	}
	return ws
}

// wait is a barrier.
func (g *chanGroup) wait() {
	g.mu.Lock()
	defer g.mu.Unlock()
	round := g.round
	if g.count++; g.count == g.n {
		g.count, g.round = 0, g.round+1
		g.cond.Broadcast()
		return
	}
	for round == g.round {
		g.cond.Wait()
	}
}

// exchange returns every rank's v once all ranks have put theirs.
func exchange[T any](w chanWorld, v T) []T {
	w.g.slots[w.rank] = v
	w.g.wait()
	all := make([]T, w.g.n)
	for r := range all {
		all[r] = w.g.slots[r].(T)
	}
	w.g.wait()
	return all
}

func sumAll[T float32 | float64](w chanWorld, buf []T) error {
	all := exchange(w, slices.Clone(buf))
	for i := range buf {
		var s T
		for _, b := range all {
			s += b[i]
		}
		buf[i] = s
	}
	return nil
}

func (w chanWorld) Rank() int                               { return w.rank }
func (w chanWorld) Size() int                               { return w.g.n }
func (w chanWorld) AllreduceSumFloat32(buf []float32) error { return sumAll(w, buf) }
func (w chanWorld) AllreduceSumFloat64(buf []float64) error { return sumAll(w, buf) }
func (w chanWorld) Agree(string, []byte) error              { return nil }
func (w chanWorld) BroadcastFloat32(buf []float32, root int) error {
	copy(buf, exchange(w, slices.Clone(buf))[root])
	return nil
}
func (w chanWorld) BroadcastBytes(buf []byte, root int) ([]byte, error) {
	return exchange(w, slices.Clone(buf))[root], nil
}

// timeRanks runs TimeSteps on every rank of a world of n goroutines, rank r
// with config(r).
func timeRanks(n int, config func(r int) StepTimingConfig) ([]StepTiming, []error) {
	res, errs := make([]StepTiming, n), make([]error, n)
	var wg sync.WaitGroup
	for r, w := range newChanWorlds(n) {
		wg.Go(func() {
			c := config(r)
			c.World = w
			res[r], errs[r] = TimeSteps(c)
		})
	}
	wg.Wait()
	return res, errs
}

// Two ranks step the same number of times (rank 0's count, even when the
// other rank was asked for fewer: a rank that stopped first would leave the
// other in an all-reduce), report the global images/s, the all-reduce's
// share and its bytes, and step batches of their own.
func TestTimeStepsTwoRanks(t *testing.T) {
	spec := layers.Spec{Height: 28, Width: 28, Channels: 1, Classes: 10}
	res, errs := timeRanks(2, func(r int) StepTimingConfig {
		c := StepTimingConfig{Model: "lenet", Spec: spec, Batch: 16, Warmup: 2, Steps: 4, MinDur: 50 * time.Millisecond}
		if r == 1 {
			c.Steps, c.MinDur = 1, 0
		}
		return c
	})
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	r0, r1 := res[0], res[1]
	if r0.Steps != r1.Steps || r0.Steps < 4 || r0.Seconds < 0.05 {
		t.Errorf("timed steps: rank 0 %d in %v s, rank 1 %d; want the same, at least 4 and 50 ms", r0.Steps, r0.Seconds, r1.Steps)
	}
	if r0.Ranks != 2 || !(r0.CommShare > 0 && r0.CommShare < 1) || r0.CommShare != r1.CommShare {
		t.Errorf("ranks %d, comm share %v (rank 1: %v); want 2 and one share in (0, 1)", r0.Ranks, r0.CommShare, r1.CommShare)
	}
	if r0.AllreduceBytesPerStep != 4*61706 {
		t.Errorf("all-reduce bytes a step %d, want 4 × lenet's 61706 parameters", r0.AllreduceBytesPerStep)
	}
	if want := float64(r0.Steps*16) / r0.Seconds; r0.TrainImagesPerSec != want {
		t.Errorf("images/s %v, want the global batch's %v", r0.TrainImagesPerSec, want)
	}
	// Seeded by rank: the same weights on different rows lose differently.
	if r0.FinalLoss == r1.FinalLoss {
		t.Errorf("both ranks' last loss is %v: their synthetic batches should differ", r0.FinalLoss)
	}
}

// One process keeps its line: no ranks, no share, no bytes.
func TestTimeStepsOneProcessHasNoRankFigures(t *testing.T) {
	spec := layers.Spec{Height: 28, Width: 28, Channels: 1, Classes: 10}
	r, err := TimeSteps(StepTimingConfig{Model: "lenet", Spec: spec, Batch: 3, Warmup: 1, Steps: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.Ranks != 0 || r.CommShare != 0 || r.AllreduceBytesPerStep != 0 || r.Steps != 1 {
		t.Errorf("one process: %+v", r)
	}
}

func TestTimeStepsRefusesABatchTheRanksCannotShare(t *testing.T) {
	spec := layers.Spec{Height: 28, Width: 28, Channels: 1, Classes: 10}
	_, errs := timeRanks(2, func(int) StepTimingConfig {
		return StepTimingConfig{Model: "lenet", Spec: spec, Batch: 15, Steps: 1}
	})
	for r, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "does not divide among 2 ranks") {
			t.Errorf("rank %d: batch 15 over 2 ranks: %v", r, err)
		}
	}
}

// Rank 0's chunks of timed steps: what is owed in steps or time, the first
// aiming at half the time at the warm-up's pace, the next at the pace
// measured; none once both are met.
func TestChunkSteps(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		done, steps             int
		minDur, elapsed, warmup time.Duration
		want                    int
	}{
		{0, 20, time.Second, 0, ms, 500},
		{1, 20, time.Second, 0, 10 * ms, 50},
		{100, 20, time.Second, 200 * ms, ms, 400},
		{5, 20, time.Second, 2 * time.Second, ms, 15},
		{30, 20, time.Second, 999 * ms, ms, 1},
		{20, 20, time.Second, time.Second, ms, 0},
		{0, 3, 0, 0, ms, 3},
	} {
		if got := chunkSteps(c.done, c.steps, c.minDur, c.elapsed, c.warmup); got != c.want {
			t.Errorf("chunkSteps(done %d, steps %d, %v, elapsed %v, warm-up step %v) = %d, want %d",
				c.done, c.steps, c.minDur, c.elapsed, c.warmup, got, c.want)
		}
	}
}
