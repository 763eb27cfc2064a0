package trainer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-ml/kiln/layers"
)

// memGroup is a world of ranks that are goroutines of this process: what
// the MPI world does, for tests without MPI. Sums add in rank order.
type memGroup struct {
	n     int
	mu    sync.Mutex
	count int
	gen   chan struct{}
	slots []any
}

func newMemWorlds(n int) []World {
	g := &memGroup{n: n, gen: make(chan struct{}), slots: make([]any, n)}
	ws := make([]World, n)
	for r := range ws {
		ws[r] = memWorld{r, g}
	}
	return ws
}

// wait returns once every rank has called it.
func (g *memGroup) wait() {
	g.mu.Lock()
	ch := g.gen
	if g.count++; g.count == g.n {
		g.count, g.gen = 0, make(chan struct{})
		close(ch)
	}
	g.mu.Unlock()
	<-ch
}

type memWorld struct {
	rank int
	g    *memGroup
}

func (w memWorld) Rank() int { return w.rank }
func (w memWorld) Size() int { return w.g.n }

// exchange puts v in the rank's slot and returns every rank's, once all
// have; the slots stay until every rank has read them.
func exchange[T any](w memWorld, v T, read func(all []T)) {
	w.g.slots[w.rank] = v
	w.g.wait()
	all := make([]T, w.g.n)
	for r := range all {
		all[r] = w.g.slots[r].(T)
	}
	read(all)
	w.g.wait()
}

func sumInto[T float32 | float64](w memWorld, buf []T) error {
	exchange(w, slices.Clone(buf), func(all [][]T) {
		for i := range buf {
			var s T
			for _, b := range all {
				s += b[i]
			}
			buf[i] = s
		}
	})
	return nil
}

func (w memWorld) AllreduceSumFloat32(buf []float32) error { return sumInto(w, buf) }
func (w memWorld) AllreduceSumFloat64(buf []float64) error { return sumInto(w, buf) }

func (w memWorld) BroadcastFloat32(buf []float32, root int) error {
	exchange(w, slices.Clone(buf), func(all [][]float32) { copy(buf, all[root]) })
	return nil
}

func (w memWorld) BroadcastBytes(buf []byte, root int) ([]byte, error) {
	var out []byte
	exchange(w, slices.Clone(buf), func(all [][]byte) { out = slices.Clone(all[root]) })
	return out, nil
}

func (w memWorld) Agree(what string, value []byte) error {
	var err error
	exchange(w, value, func(all [][]byte) {
		for r, v := range all {
			if !bytes.Equal(v, all[0]) {
				err = fmt.Errorf("ranks disagree on %s: rank %d", what, r)
			}
		}
	})
	return err
}

// fitRanks runs Fit on every rank of a world at once, each with the
// configuration change asks of its rank, and returns the ranks' trainers
// and errors.
func fitRanks(t *testing.T, ws []World, change func(rank int, c *Config)) ([]*Trainer, []*Summary, []error) {
	t.Helper()
	return fitRanksCtx(t, ws, change, func(int) context.Context { return context.Background() })
}

// fitRanksCtx is fitRanks with a context per rank. bucketBytes, when set,
// is every trainer's BucketBytes.
func fitRanksCtx(t *testing.T, ws []World, change func(rank int, c *Config), ctx func(rank int) context.Context, bucketBytes ...int) ([]*Trainer, []*Summary, []error) {
	t.Helper()
	trs, sums, errs := make([]*Trainer, len(ws)), make([]*Summary, len(ws)), make([]error, len(ws))
	var wg sync.WaitGroup
	for r, w := range ws {
		c := blobConfig()
		c.Batch, c.Epochs = 30, 2
		change(r, &c)
		dir := ""
		if r == 0 { // rank 0 alone writes a run directory
			dir = t.TempDir()
		}
		trs[r] = newBlobTrainer(t, c, dir, false)
		trs[r].World = w
		if len(bucketBytes) > 0 {
			trs[r].BucketBytes = bucketBytes[0]
		}
		wg.Go(func() { sums[r], errs[r] = trs[r].Fit(ctx(r), blobSplits(t)) })
	}
	wg.Wait()
	return trs, sums, errs
}

// Three ranks at a global batch of 30 train as one process does: 512
// samples make a last batch of 2, whose third shard is empty. The best
// weights, which rank 0 alone has, are restored on every rank before the
// test, and rank 0's final pictures evaluate on rank 0 alone.
func TestThreeRanksTrainAsOneProcess(t *testing.T) {
	best := func(_ int, c *Config) { c.RestoreBest, c.EarlyStop, c.Patience = true, "val_loss", 100 }
	one, sums1, errs := fitRanks(t, []World{Solo{}}, best)
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
	trs, sums, errs := fitRanks(t, newMemWorlds(3), best)
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	want := layers.State(one[0].Model)
	for r, tr := range trs {
		if d := math.Abs(*sums[r].TestLoss-*sums1[0].TestLoss) / *sums1[0].TestLoss; d > 1e-5 {
			t.Errorf("rank %d: test loss %v, one process %v", r, *sums[r].TestLoss, *sums1[0].TestLoss)
		}
		if sums[r].WorldSize != 3 || sums[r].Steps != sums1[0].Steps {
			t.Errorf("rank %d: world_size %d, %d steps (one process: %d)", r, sums[r].WorldSize, sums[r].Steps, sums1[0].Steps)
		}
		for name, v := range layers.State(tr.Model) {
			a, b := want[name].Values(), v.Values()
			scale, worst := 0.0, 0.0
			for i := range a {
				scale, worst = max(scale, math.Abs(a[i])), max(worst, math.Abs(a[i]-b[i]))
			}
			if worst > 1e-5*scale {
				t.Errorf("rank %d: %s differs from one process's by %.2g of its largest", r, name, worst/scale)
			}
			if r > 0 && !slices.Equal(b, layers.State(trs[0].Model)[name].Values()) {
				t.Errorf("rank %d: %s differs from rank 0's", r, name)
			}
		}
	}
}

func TestRanksThatDisagreeAreRefused(t *testing.T) {
	_, _, errs := fitRanks(t, newMemWorlds(2), func(r int, c *Config) { c.LR += float64(r) })
	for r, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "disagree on the configuration") {
			t.Errorf("rank %d: %v, want the configurations' disagreement", r, err)
		}
	}
	_, _, errs = fitRanks(t, newMemWorlds(2), func(_ int, c *Config) { c.Batch = 31 })
	for r, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "--batch 31 is the global batch") {
			t.Errorf("rank %d: %v, want --batch 31 refused", r, err)
		}
	}
}

// Ctrl-C reaches each rank at its own step: every rank stops before the
// same one, none left waiting in an all-reduce.
func TestOneRankCancelledStopsEveryRank(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, errs := fitRanksCtx(t, newMemWorlds(2), func(int, *Config) {}, func(r int) context.Context {
		if r == 1 {
			return cancelled
		}
		return context.Background()
	})
	for r, err := range errs {
		if !errors.Is(err, ErrInterrupted) {
			t.Errorf("rank %d: %v, want ErrInterrupted", r, err)
		}
	}
}

// A run paused by three ranks resumes with two from rank 0's checkpoint,
// which rank 0 alone can read, and ends as one process's uninterrupted run.
func TestRanksResumeWithAnotherWorldSize(t *testing.T) {
	dir := t.TempDir()
	run := func(ws []World, resume bool, stopAfter int) []*Trainer {
		trs, errs := make([]*Trainer, len(ws)), make([]error, len(ws))
		var wg sync.WaitGroup
		for r, w := range ws {
			c := blobConfig()
			c.Batch, c.Epochs, c.StopAfterEpoch = 30, 3, stopAfter
			d := ""
			if r == 0 {
				d = dir
			}
			trs[r] = newBlobTrainer(t, c, d, resume)
			trs[r].World = w
			wg.Go(func() { _, errs[r] = trs[r].Fit(context.Background(), blobSplits(t)) })
		}
		wg.Wait()
		for r, err := range errs {
			if err != nil {
				t.Fatalf("rank %d of %d: %v", r, len(ws), err)
			}
		}
		return trs
	}
	run(newMemWorlds(3), false, 1)
	resumed := run(newMemWorlds(2), true, 0)
	dir = ""
	want := layers.State(run([]World{Solo{}}, false, 0)[0].Model)
	for r, tr := range resumed {
		for name, v := range layers.State(tr.Model) {
			a, b := want[name].Values(), v.Values()
			scale, worst := 0.0, 0.0
			for i := range a {
				scale, worst = max(scale, math.Abs(a[i])), max(worst, math.Abs(a[i]-b[i]))
			}
			if worst > 1e-5*scale {
				t.Errorf("rank %d: %s differs from one process's by %.2g of its largest", r, name, worst/scale)
			}
		}
	}
}

// cancelAfter is a context cancelled from its n+1st look on: a Ctrl-C at a
// chosen step.
type cancelAfter struct {
	context.Context
	n, seen int
}

func (c *cancelAfter) Err() error {
	if c.seen++; c.seen > c.n {
		return context.Canceled
	}
	return nil
}

// Interrupted mid-epoch by 2 ranks and resumed by 2: the epochs' training
// losses are an uninterrupted process's (the checkpoint's sums counted once).
func TestRanksInterruptedMidEpochRecordTheSameLosses(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir()}
	run := func(ws []World, dir string, resume bool, ctx func(r int) context.Context) error {
		errs := make([]error, len(ws))
		var wg sync.WaitGroup
		for r, w := range ws {
			c := blobConfig()
			c.Batch, c.Epochs = 30, 3
			d := ""
			if r == 0 {
				d = dir
			}
			tr := newBlobTrainer(t, c, d, resume)
			tr.World = w
			wg.Go(func() { _, errs[r] = tr.Fit(ctx(r), blobSplits(t)) })
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	bg := func(int) context.Context { return context.Background() }
	if err := run([]World{Solo{}}, dirs[0], false, bg); err != nil {
		t.Fatal(err)
	}
	err := run(newMemWorlds(2), dirs[1], false, func(r int) context.Context {
		if r == 0 {
			return &cancelAfter{Context: context.Background(), n: 25}
		}
		return context.Background()
	})
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted: %v", err)
	}
	if err := run(newMemWorlds(2), dirs[1], true, bg); err != nil {
		t.Fatal(err)
	}
	losses := func(dir string) (out []float64) {
		b, err := os.ReadFile(filepath.Join(dir, MetricsFile))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var r MetricsRecord
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatal(err)
			}
			if r.Split == "train" {
				out = append(out, r.Loss)
			}
		}
		return out
	}
	want, got := losses(dirs[0]), losses(dirs[1])
	if len(want) != 3 || len(got) != 3 {
		t.Fatalf("train records: %v against %v", got, want)
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-5*want[i] {
			t.Errorf("epoch %d: train loss %v, one process %v", i+1, got[i], want[i])
		}
	}
}

// The configuration itself refuses a global batch the ranks cannot share,
// so kiln train says so before it makes a run directory.
func TestValidateTrainingRefusesAnUnevenGlobalBatch(t *testing.T) {
	c := DefaultConfig()
	c.Batch, c.WorldSize = 63, 2
	if err := c.ValidateTraining(); err == nil || !strings.Contains(err.Error(), "--batch 64") {
		t.Errorf("batch 63 on 2 ranks: %v, want a refusal suggesting --batch 64", err)
	}
	c.Batch = 64
	if err := c.ValidateTraining(); err != nil {
		t.Errorf("batch 64 on 2 ranks: %v", err)
	}
}

// --sync-bn refuses an epoch whose last batch has fewer samples than there
// are ranks (512 samples in batches of 30 on 3 ranks: 2 left): a rank with
// none would have no batch-norm pass to take part in. --drop-last drops it.
func TestSyncBNRefusesAnEmptyShard(t *testing.T) {
	_, _, errs := fitRanks(t, newMemWorlds(3), func(_ int, c *Config) { c.SyncBN = true })
	for r, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "2 samples, fewer than the 3 ranks") {
			t.Errorf("rank %d: %v, want the empty shard refused", r, err)
		}
	}
	_, _, errs = fitRanks(t, newMemWorlds(3), func(_ int, c *Config) { c.SyncBN, c.DropLast = true, true })
	for r, err := range errs {
		if err != nil {
			t.Errorf("rank %d with --drop-last: %v", r, err)
		}
	}
}

// crowdedWorld is a world whose ranks say that many of them share this
// machine.
type crowdedWorld struct {
	World
	local int
}

func (w crowdedWorld) LocalSize() int { return w.local }

// The ranks on one machine share its memory: each checks its estimate
// against its part (a million ranks leave each too little), not the whole.
func TestRanksShareTheMachinesMemory(t *testing.T) {
	ws := newMemWorlds(2)
	for i := range ws {
		ws[i] = crowdedWorld{ws[i], 1 << 20}
	}
	_, _, errs := fitRanks(t, ws, func(int, *Config) {})
	for r, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "shared by the 1048576 ranks on this machine") {
			t.Errorf("rank %d: %v, want the memory check to divide the machine's memory", r, err)
		}
	}
}

// asyncMemWorld starts an all-reduce by doing it (in-process ranks have
// nothing to overlap), so that the trainer takes its bucketed path.
type asyncMemWorld struct{ memWorld }

type donePending struct{}

func (donePending) Test() (bool, error) { return true, nil }
func (donePending) Wait() error         { return nil }

func (w asyncMemWorld) StartAllreduceSumFloat32(buf []float32) (Pending, error) {
	return donePending{}, sumInto(w.memWorld, buf)
}

// Gradients sent in buckets during the backward pass give the bits of one
// all-reduce after it: buckets of a layer each (4 bytes) and of two or
// three layers, on 3 ranks whose last shard of each epoch is empty (the
// idle rank must send the same buckets, or the collectives would not
// match: sumInto's type assertion and lengths would fail).
func TestBucketedGradientsEqualOneAllreduce(t *testing.T) {
	background := func(int) context.Context { return context.Background() }
	whole, _, errs := fitRanksCtx(t, newMemWorlds(3), func(int, *Config) {}, background, -1)
	for r, err := range errs {
		if err != nil {
			t.Fatalf("one all-reduce, rank %d: %v", r, err)
		}
	}
	want := layers.State(whole[0].Model)
	for _, bucket := range []int{4, 8 << 10} {
		ws := newMemWorlds(3)
		for i := range ws {
			ws[i] = asyncMemWorld{ws[i].(memWorld)}
		}
		trs, _, errs := fitRanksCtx(t, ws, func(int, *Config) {}, background, bucket)
		for r, err := range errs {
			if err != nil {
				t.Fatalf("buckets of %d bytes, rank %d: %v", bucket, r, err)
			}
		}
		if len(trs[0].grads.buckets.bounds) < 3 {
			t.Fatalf("buckets of %d bytes: the reducer did not overlap (bounds %v)", bucket, trs[0].grads.buckets.bounds)
		}
		for r, tr := range trs {
			for name, v := range layers.State(tr.Model) {
				if !slices.Equal(v.Values(), want[name].Values()) {
					t.Errorf("buckets of %d bytes, rank %d: %s differs from one all-reduce's", bucket, r, name)
				}
			}
		}
	}
}

// Tied weights (one *Param in two layers) are one part of the flat buffer:
// the buckets' bounds count it once, in its first layer (they ran past the
// buffer: a panic in the first step under mpirun).
func TestBucketsCountATiedParameterOnce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	a, b := layers.NewLinear(rng, 4, 4, false), layers.NewLinear(rng, 4, 4, false)
	b.Weight = a.Weight
	m := &layers.Model{Sequential: layers.NewSequential(a, layers.NewReLU(), b)}
	_, ps := layers.Params(m)
	g := &GradReducer{World: asyncMemWorld{newMemWorlds(1)[0].(memWorld)}, BucketBytes: 4}
	g.Overlap(m, ps)
	if want := []int{0, 16, 16, 16}; !slices.Equal(g.buckets.bounds, want) {
		t.Fatalf("bounds %v, want %v", g.buckets.bounds, want)
	}
	if err := g.begin(ps); err != nil {
		t.Fatal(err)
	}
	for i := 2; i >= 0; i-- {
		if err := g.layerDone(i); err != nil {
			t.Fatal(err)
		}
	}
}
