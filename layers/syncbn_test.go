package layers

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// fakeWorld is an in-process all-reduce over goroutines, one per rank: a call
// waits until every rank has given its buffer for that round, then each gets
// the sum, added in rank order (the same bits everywhere). A rank that never
// comes fails the others' calls after a timeout instead of hanging the test.
type fakeWorld struct {
	size int
	mu   sync.Mutex
	cur  *fakeRound
}

type fakeRound struct {
	bufs [][]float64
	in   int
	done chan struct{}
	sum  []float64
	err  error
}

func (w *fakeWorld) reducer(rank int) func([]float64) error {
	return func(buf []float64) error {
		w.mu.Lock()
		if w.cur == nil {
			w.cur = &fakeRound{bufs: make([][]float64, w.size), done: make(chan struct{})}
		}
		r := w.cur
		r.bufs[rank] = append([]float64(nil), buf...)
		if r.in++; r.in == w.size {
			r.sum = make([]float64, len(buf))
			for from, b := range r.bufs {
				if len(b) != len(buf) {
					r.err = fmt.Errorf("rank %d gave %d values, rank %d %d", from, len(b), rank, len(buf))
					continue
				}
				for i, v := range b {
					r.sum[i] += v
				}
			}
			w.cur = nil
			close(r.done)
		}
		w.mu.Unlock()
		select {
		case <-r.done:
		case <-time.After(20 * time.Second):
			return errors.New("fake all-reduce: a rank did not come")
		}
		if r.err != nil {
			return r.err
		}
		copy(buf, r.sum)
		return nil
	}
}

// newTestBatchNorm is a BatchNorm2D of dtype dt with weights from seed, so
// that copies made with the same seed are the ranks' identical replicas.
func newTestBatchNorm(dt engine.DType, c int, seed uint64) *BatchNorm2D {
	b := NewBatchNorm2D(c)
	rng := rand.New(rand.NewPCG(seed, 5))
	uniform(b.Weight.Value, rng, 1)
	uniform(b.Bias.Value, rng, 1)
	Convert(b, dt)
	return b
}

// step runs one forward and backward pass of b and returns copies of the
// output and dx.
func step(b *BatchNorm2D, x, dout *engine.Tensor) (out, dx *engine.Tensor, err error) {
	o, err := b.Forward(x)
	if err != nil {
		return nil, nil, err
	}
	out = o.Clone()
	d, err := b.Backward(dout)
	if err != nil {
		return nil, nil, err
	}
	return out, d.Clone(), nil
}

// syncClose fails with the worst element when got and want differ by more
// than atol + rtol·|want|.
func syncClose(t *testing.T, what string, got, want []float64, atol, rtol float64) {
	t.Helper()
	if msg := gradcheck.Close(got, want, atol, rtol); msg != "" {
		t.Errorf("%s: %s", what, msg)
	}
}

// Two ranks, each with a replica of the layer and a shard of the global batch,
// against one layer on the whole batch, over two steps. The loss is the mean
// over the global batch of Σ out·w for a fixed w; each rank's dout is the
// gradient of its own shard's mean loss, w/n_r, the whole batch's w/N. The
// ranks then give the whole batch's output and running statistics, the
// share-weighted sums of their parameter gradients give the whole batch's,
// and their dx rows are the whole batch's scaled by N/n_r.
func TestSyncBatchNormTwoRanksAreOneBatch(t *testing.T) {
	const n, c = 8, 3
	for _, dt := range []engine.DType{engine.Float32, engine.Float64} {
		atol, rtol := 1e-6, 1e-5
		if dt == engine.Float64 {
			atol, rtol = 1e-12, 1e-12
		}
		for _, split := range [][2]int{{4, 4}, {5, 3}, {1, 7}, {8, 0}} {
			name := fmt.Sprintf("%v split %v", dt, split)
			whole := newTestBatchNorm(dt, c, 9)
			world := &fakeWorld{size: 2}
			var ranks [2]*BatchNorm2D
			for r := range ranks {
				ranks[r] = newTestBatchNorm(dt, c, 9)
				if SyncBatchNorm(ranks[r], world.reducer(r)) != 1 {
					t.Fatal("SyncBatchNorm did not find the layer")
				}
			}
			rng := rand.New(rand.NewPCG(uint64(split[0]), 3))
			for stepNo := range 2 {
				x := gradcheck.Rand(rng, -1, 3, n, c, 4, 5).As(dt)
				w := gradcheck.Rand(rng, -1, 1, n, c, 4, 5).As(dt)
				twoRanksStep(t, fmt.Sprintf("%s step %d", name, stepNo), whole, ranks, split, x, w, atol, rtol)
			}
		}
	}
}

// twoRanksStep is one step of TestSyncBatchNormTwoRanksAreOneBatch.
func twoRanksStep(t *testing.T, name string, whole *BatchNorm2D, ranks [2]*BatchNorm2D, split [2]int,
	x, w *engine.Tensor, atol, rtol float64) {
	t.Helper()
	n := float64(x.Dim(0))
	ZeroGrad(whole)
	dout := w.Clone()
	engine.Scale(dout, 1/n)
	wantOut, wantDx, err := step(whole, x, dout)
	if err != nil {
		t.Fatal(err)
	}
	var outs, dxs [2]*engine.Tensor
	var errs [2]error
	var wg sync.WaitGroup
	for r, b := range ranks {
		start := split[0] * r
		xr, _ := x.Rows(start, split[r])
		wr, _ := w.Rows(start, split[r])
		doutR := wr.Clone()
		engine.Scale(doutR, 1/float64(max(split[r], 1)))
		ZeroGrad(b)
		wg.Go(func() { outs[r], dxs[r], errs[r] = step(b, xr, doutR) })
	}
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var dgamma, dbeta []float64
	for r, b := range ranks {
		start, share := split[0]*r, float64(split[r])/n
		want, _ := wantOut.Rows(start, split[r])
		syncClose(t, fmt.Sprintf("%s rank %d out", name, r), outs[r].Values(), want.Values(), atol, rtol)
		want, _ = wantDx.Rows(start, split[r])
		engine.Scale(dxs[r], share)
		syncClose(t, fmt.Sprintf("%s rank %d dx·s", name, r), dxs[r].Values(), want.Values(), atol, rtol)
		syncClose(t, fmt.Sprintf("%s rank %d running mean", name, r), b.RunningMean.Value.Values(),
			whole.RunningMean.Value.Values(), atol, rtol)
		syncClose(t, fmt.Sprintf("%s rank %d running var", name, r), b.RunningVar.Value.Values(),
			whole.RunningVar.Value.Values(), atol, rtol)
		dgamma = addScaledValues(dgamma, b.Weight.Grad.Values(), share)
		dbeta = addScaledValues(dbeta, b.Bias.Grad.Values(), share)
	}
	syncClose(t, name+" Σ s·dgamma", dgamma, whole.Weight.Grad.Values(), atol, rtol)
	syncClose(t, name+" Σ s·dbeta", dbeta, whole.Bias.Grad.Values(), atol, rtol)
}

func addScaledValues(sum, v []float64, s float64) []float64 {
	if sum == nil {
		sum = make([]float64, len(v))
	}
	for i := range v {
		sum[i] += s * v[i]
	}
	return sum
}

// One rank, whose all-reduce changes nothing, is the ordinary layer.
func TestSyncBatchNormOneRankIsBatchNorm(t *testing.T) {
	for _, dt := range []engine.DType{engine.Float32, engine.Float64} {
		atol, rtol := 1e-6, 1e-6
		if dt == engine.Float64 {
			atol, rtol = 1e-12, 1e-12
		}
		plain, synced := newTestBatchNorm(dt, 4, 3), newTestBatchNorm(dt, 4, 3)
		calls := 0
		SyncBatchNorm(synced, func([]float64) error { calls++; return nil })
		rng := rand.New(rand.NewPCG(4, 4))
		x := gradcheck.Rand(rng, -2, 2, 6, 4, 3, 3).As(dt)
		dout := gradcheck.Rand(rng, -1, 1, 6, 4, 3, 3).As(dt)
		wantOut, wantDx, err := step(plain, x, dout)
		if err != nil {
			t.Fatal(err)
		}
		out, dx, err := step(synced, x, dout)
		if err != nil {
			t.Fatal(err)
		}
		if calls != 2 {
			t.Errorf("%v: the reducer was called %d times in a step, want 2", dt, calls)
		}
		syncClose(t, dt.String()+" out", out.Values(), wantOut.Values(), atol, rtol)
		syncClose(t, dt.String()+" dx", dx.Values(), wantDx.Values(), atol, rtol)
		_, want := Params(plain)
		_, got := Params(synced)
		for i, p := range got {
			syncClose(t, fmt.Sprintf("%v param %d", dt, i), p.Value.Values(), want[i].Value.Values(), atol, rtol)
			if p.Grad != nil {
				syncClose(t, fmt.Sprintf("%v grad %d", dt, i), p.Grad.Values(), want[i].Grad.Values(), atol, rtol)
			}
		}
	}
}

func TestGradientSyncBatchNormOneRank(t *testing.T) {
	bn := newTestBatchNorm(engine.Float64, 3, 6)
	SyncBatchNorm(bn, func([]float64) error { return nil })
	checkLayer(t, bn, 9, gradcheck.Options{ATol: 1e-5, RTol: 1e-4}, 2, 3, 3, 5)
}

// SyncBatchNorm finds the layers inside a model and nil takes the reducer
// away; evaluation never calls it; its error fails the pass.
func TestSyncBatchNormSetsEvalAndErrors(t *testing.T) {
	m := NewSequential(NewBatchNorm2D(2), NewResidual(NewSequential(NewBatchNorm2D(2), NewReLU())))
	calls := 0
	failing := errors.New("rank 1 is gone")
	if got := SyncBatchNorm(m, func([]float64) error { calls++; return failing }); got != 2 {
		t.Fatalf("SyncBatchNorm found %d batch norms, want 2", got)
	}
	x := gradcheck.Rand(rand.New(rand.NewPCG(1, 1)), -1, 1, 3, 2, 2, 2).As(engine.Float32)
	if _, err := m.Forward(x); !errors.Is(err, failing) {
		t.Errorf("Forward with a failing reducer: %v, want its error", err)
	}
	m.SetTraining(false)
	calls = 0
	if _, err := m.Forward(x); err != nil || calls != 0 {
		t.Errorf("evaluation: error %v, %d reducer calls, want none", err, calls)
	}
	m.SetTraining(true)
	if got := SyncBatchNorm(m, nil); got != 2 {
		t.Fatalf("SyncBatchNorm(nil) found %d batch norms, want 2", got)
	}
	if _, err := m.Forward(x); err != nil || calls != 0 {
		t.Errorf("after clearing: error %v, %d reducer calls, want none", err, calls)
	}
}

func TestSyncBatchNormAllocatesNothing(t *testing.T) {
	bn := newTestBatchNorm(engine.Float32, 8, 2)
	SyncBatchNorm(bn, func([]float64) error { return nil })
	x := gradcheck.Rand(rand.New(rand.NewPCG(2, 2)), -1, 1, 4, 8, 5, 5).As(engine.Float32)
	f := func() {
		if _, err := bn.Forward(x); err != nil {
			t.Fatal(err)
		}
		if _, err := bn.Backward(x); err != nil {
			t.Fatal(err)
		}
	}
	f()
	if a := testing.AllocsPerRun(10, f); a != 0 {
		t.Errorf("a synchronised step allocates %v times", a)
	}
}

// On a GPU the layer refuses, saying so, before it reaches the reducer.
func TestSyncBatchNormRefusesCUDA(t *testing.T) {
	if _, err := engine.OpenDevice(engine.CUDA); err != nil {
		t.Skipf("skipped: no CUDA device (%v)", err)
	}
	bn := NewBatchNorm2D(2)
	SyncBatchNorm(bn, func([]float64) error { t.Error("the reducer was called"); return nil })
	if err := ToDevice(bn, engine.CUDA); err != nil {
		t.Fatal(err)
	}
	defer Release(bn)
	x, err := engine.NewOn(engine.CUDA, engine.Float32, 2, 2, 3, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Release()
	if _, err := bn.Forward(x); err == nil || !strings.Contains(err.Error(), "--sync-bn runs on the CPU so far") {
		t.Errorf("Forward on CUDA: %v, want the CPU-only error", err)
	}
}

// BenchmarkBatchNormStep is a training step of a plain and of a synchronised
// (one rank, the all-reduce the identity) batch norm: the cost of the split
// passes, without communication.
func BenchmarkBatchNormStep(b *testing.B) {
	x := gradcheck.Rand(rand.New(rand.NewPCG(3, 3)), -1, 1, 32, 16, 28, 28).As(engine.Float32)
	for _, synced := range []bool{false, true} {
		bn := newTestBatchNorm(engine.Float32, 16, 1)
		if synced {
			SyncBatchNorm(bn, func([]float64) error { return nil })
		}
		b.Run(fmt.Sprintf("synced=%v", synced), func(b *testing.B) {
			for b.Loop() {
				if _, err := bn.Forward(x); err != nil {
					b.Fatal(err)
				}
				if _, err := bn.Backward(x); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
