package engine_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/cuda"
	"github.com/kiln-ml/kiln/engine"
)

// scalarPair puts a GPU result and its CPU reference into one-element
// tensors for checkKernels.
func scalarPair(t testing.TB, got, want float64) (g, w *engine.Tensor) {
	t.Helper()
	w = engine.New(engine.Float64, 1)
	w.SetAt(0, want)
	g64 := engine.New(engine.Float64, 1)
	g64.SetAt(0, got)
	return dev(t, g64), w
}

func TestCUDASoftmaxCrossEntropy(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(21, 22))
	fwd := []string{"softmax_xent_forward_f32"}
	bwd := []string{"softmax_xent_backward_f32"}
	for _, c := range []struct {
		n, k      int
		eps, sc   float64
		withProbs bool
	}{
		{1, 3, 0, 1, true},
		{5, 10, 0.1, 1, true},
		{37, 10, 0, 0.5, true},
		{4, 33, 0.2, 1, true},
		{3, 1000, 0.1, 2, true},
		{6, 10, 0.1, 1, false},
	} {
		logits, dlogits := devRandRange(t, rng, 5, nil, c.n, c.k)
		// Row 0 ties its maximum at two places (the first counts); the last
		// row of a wide case is one value throughout.
		if c.k > 2 {
			logits.SetAt(1, 6)
			logits.SetAt(c.k-1, 6)
		}
		if c.n > 1 && c.k == 1000 {
			for j := range c.k {
				logits.SetAt((c.n-1)*c.k+j, -2)
			}
		}
		dlogits = dev(t, logits)
		labels := make([]int32, c.n)
		for i := range labels {
			labels[i] = int32(rng.IntN(c.k))
		}
		labels[0] = 1 // the first of the tied maxima: correct
		var probs, dprobs *engine.Tensor
		if c.withProbs {
			probs = engine.New(engine.Float32, c.n, c.k)
			dprobs = dev(t, probs)
		}
		loss, correct, err := engine.SoftmaxCrossEntropyForward(probs, logits, labels, c.eps)
		opsMust(t, err)
		dloss, dcorrect, err := engine.SoftmaxCrossEntropyForward(dprobs, dlogits, labels, c.eps)
		opsMust(t, err)
		if dcorrect != correct {
			t.Errorf("N=%d K=%d: %d correct on the GPU, %d on the CPU", c.n, c.k, dcorrect, correct)
		}
		// The row losses are float sums (logsumexp, Σx) put together in
		// double and added in float64 on the host; the CPU sums in float64.
		g, w := scalarPair(t, dloss, loss)
		checkKernels(t, fwd, "cross-entropy loss", g, w, 1e-6, 1e-6)
		if !c.withProbs {
			continue
		}
		// expf within 2 ulp, the row sum's rounding and 1/sum.
		checkKernels(t, fwd, "softmax probs", dprobs, probs, 1e-9, 2e-6)

		// Backward from the CPU's probs; dlogits overwrites probs in the
		// second run, as the CPU allows.
		dp := dev(t, probs)
		want := engine.New(engine.Float32, c.n, c.k)
		opsMust(t, engine.SoftmaxCrossEntropyBackward(want, probs, labels, c.eps, c.sc))
		got := dev(t, engine.New(engine.Float32, c.n, c.k))
		opsMust(t, engine.SoftmaxCrossEntropyBackward(got, dp, labels, c.eps, c.sc))
		// s·p − off in float32; a GPU may fuse it into one FMA (one rounding
		// fewer): 1 ulp of s·p ≤ 1.2e-7·s.
		atol := 1.2e-7 * c.sc / float64(c.n)
		checkKernels(t, bwd, "cross-entropy backward", got, want, atol, 1e-6)
		opsMust(t, engine.SoftmaxCrossEntropyBackward(dp, dp, labels, c.eps, c.sc))
		checkKernels(t, bwd, "cross-entropy backward in place", dp, want, atol, 1e-6)
	}
}

// A NaN logit makes the row's loss NaN on both; NaN at index 0 is the CPU's
// arg-max (its scan never moves off it).
func TestCUDASoftmaxCrossEntropyNaN(t *testing.T) {
	cudaOrSkip(t)
	for _, at := range []int{0, 2} {
		logits, _ := devRandRange(t, rand.New(rand.NewPCG(23, 24)), 1, nil, 2, 5)
		logits.SetAt(at, math.NaN())
		labels := []int32{0, 3}
		loss, correct, err := engine.SoftmaxCrossEntropyForward(nil, logits, labels, 0)
		opsMust(t, err)
		dloss, dcorrect, err := engine.SoftmaxCrossEntropyForward(nil, dev(t, logits), labels, 0)
		opsMust(t, err)
		if !math.IsNaN(loss) || !math.IsNaN(dloss) || dcorrect != correct {
			t.Errorf("NaN at %d: gpu loss %v correct %d, cpu %v %d", at, dloss, dcorrect, loss, correct)
		}
	}
}

// Tied logits past 1e16, smoothed or not: ln 2 on the GPU as on the CPU
// (best + log Σ lost the log to best's rounding).
func TestCUDASoftmaxCrossEntropyHugeTiedLogits(t *testing.T) {
	cudaOrSkip(t)
	for _, v := range []float32{1e17, 1e30} {
		for _, eps := range []float64{0, 0.1} {
			logits, _ := engine.FromFloat32([]float32{v, v, v, v}, 2, 2)
			loss, _, err := engine.SoftmaxCrossEntropyForward(nil, dev(t, logits), []int32{0, 1}, eps)
			opsMust(t, err)
			if math.Abs(loss-math.Ln2) > 1e-6 {
				t.Errorf("logits %g, ε=%v: gpu loss %v, want ln 2", v, eps, loss)
			}
		}
	}
}

// A −Inf logit other than the label's: ln 2 unsmoothed, on the GPU too.
func TestCUDASoftmaxCrossEntropyNegInfLogit(t *testing.T) {
	cudaOrSkip(t)
	logits, _ := engine.FromFloat32([]float32{1, float32(math.Inf(-1)), 1}, 1, 3)
	loss, _, err := engine.SoftmaxCrossEntropyForward(nil, dev(t, logits), []int32{0}, 0)
	opsMust(t, err)
	if math.Abs(loss-math.Ln2) > 1e-6 {
		t.Errorf("gpu loss %v, want ln 2", loss)
	}
}

func TestCUDASoftmaxCrossEntropyErrors(t *testing.T) {
	cudaOrSkip(t)
	d := dev(t, engine.New(engine.Float32, 2, 3))
	if _, _, err := engine.SoftmaxCrossEntropyForward(nil, d, []int32{0, 3}, 0); err == nil {
		t.Fatal("label 3 of 3 classes was accepted")
	}
	if err := engine.SoftmaxCrossEntropyBackward(d, d, []int32{0}, 0, 1); err == nil {
		t.Fatal("one label for two rows was accepted")
	}
}

func TestCUDAMSE(t *testing.T) { testCUDARegressionLoss(t, false) }
func TestCUDAL1(t *testing.T)  { testCUDARegressionLoss(t, true) }

func testCUDARegressionLoss(t *testing.T, l1 bool) {
	cudaOrSkip(t)
	name, fwdF, bwdF := "mse", engine.MSEForward, engine.MSEBackward
	fwd, bwd := []string{"mse_forward_f32"}, []string{"mse_backward_f32"}
	if l1 {
		name, fwdF, bwdF = "l1", engine.L1Forward, engine.L1Backward
		fwd, bwd = []string{"l1_forward_f32"}, []string{"l1_backward_f32"}
	}
	rng := rand.New(rand.NewPCG(25, 26))
	for _, n := range cudaEltSizes {
		pred, dpred := devRand(t, rng, n)
		target, dtarget := devRand(t, rng, n)
		if n > 3 { // sign(0) = 0 for L1
			target.SetAt(3, pred.At(3))
			dtarget = dev(t, target)
		}
		loss, err := fwdF(pred, target)
		opsMust(t, err)
		dloss, err := fwdF(dpred, dtarget)
		opsMust(t, err)
		// Float terms and warp-tree sums against float64 throughout:
		// about log2(n) roundings of 6e-8.
		g, w := scalarPair(t, dloss, loss)
		checkKernels(t, fwd, name+" loss", g, w, 1e-7, 2e-6)

		// The same float32 operations on both: exact.
		want := engine.New(engine.Float32, n)
		opsMust(t, bwdF(want, pred, target, 0.75))
		got := dev(t, engine.New(engine.Float32, n))
		opsMust(t, bwdF(got, dpred, dtarget, 0.75))
		checkKernels(t, bwd, name+" backward", got, want, 0, 0)
		opsMust(t, bwdF(dpred, dpred, dtarget, 0.75))
		checkKernels(t, bwd, name+" backward in place", dpred, want, 0, 0)
	}
}

// The KILN_CUDA_CHECK rerun of the losses: values and in-place gradients.
func TestCUDACheckSwitchLosses(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDACheck(true)
	defer engine.SetCUDACheck(false)
	rng := rand.New(rand.NewPCG(27, 28))
	_, dl := devRand(t, rng, 4, 7)
	dp := dev(t, engine.New(engine.Float32, 4, 7))
	labels := []int32{6, 0, 3, 2}
	_, _, err := engine.SoftmaxCrossEntropyForward(dp, dl, labels, 0.1)
	opsMust(t, err)
	opsMust(t, engine.SoftmaxCrossEntropyBackward(dp, dp, labels, 0.1, 1))
	_, _, err = engine.SoftmaxCrossEntropy(dp, dev(t, engine.New(engine.Float32, 4, 7)), dl, labels, 0.1, 1)
	opsMust(t, err)
	log := engine.NewLossLog(1)
	defer log.Release()
	opsMust(t, engine.SoftmaxCrossEntropyLogged(dp, dev(t, engine.New(engine.Float32, 4, 7)), dl, labels, 0.1, 1, log))
	_, err = engine.MSEForward(dl, dp)
	opsMust(t, err)
	opsMust(t, engine.L1Backward(dl, dl, dp, 1))
}

// TestCUDASoftmaxCrossEntropyFused: the forward and backward passes in one
// launch give the bits of the two launches apart on the same device, and
// agree with the CPU as those do.
func TestCUDASoftmaxCrossEntropyFused(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(25, 26))
	fused := []string{"softmax_xent_forward_f32"}
	for _, c := range []struct {
		n, k    int
		eps, sc float64
	}{{1, 3, 0, 1}, {5, 10, 0.1, 1}, {37, 10, 0, 0.5}, {3, 1000, 0.1, 2}} {
		logits, dlogits := devRandRange(t, rng, 5, nil, c.n, c.k)
		labels := make([]int32, c.n)
		for i := range labels {
			labels[i] = int32(rng.IntN(c.k))
		}
		newDev := func() *engine.Tensor { return dev(t, engine.New(engine.Float32, c.n, c.k)) }
		probs, grad := newDev(), newDev()
		opsMust(t, cuda.StartProfile())
		loss, correct, err := engine.SoftmaxCrossEntropy(probs, grad, dlogits, labels, c.eps, c.sc)
		p, perr := cuda.StopProfile()
		opsMust(t, err)
		opsMust(t, perr)
		if p.Launches != 1 {
			t.Errorf("N=%d K=%d: %d launches, want 1", c.n, c.k, p.Launches)
		}
		apartProbs, apartGrad := newDev(), newDev()
		aloss, acorrect, err := engine.SoftmaxCrossEntropyForward(apartProbs, dlogits, labels, c.eps)
		opsMust(t, err)
		opsMust(t, engine.SoftmaxCrossEntropyBackward(apartGrad, apartProbs, labels, c.eps, c.sc))
		if loss != aloss || correct != acorrect {
			t.Errorf("N=%d K=%d: fused loss %v (%d correct), apart %v (%d)", c.n, c.k, loss, correct, aloss, acorrect)
		}
		for _, pair := range [][2]*engine.Tensor{{probs, apartProbs}, {grad, apartGrad}} {
			g, err := engine.ToCPU(nil, pair[0])
			opsMust(t, err)
			w, err := engine.ToCPU(nil, pair[1])
			opsMust(t, err)
			if !bitsEqual(g, w) {
				t.Fatalf("N=%d K=%d: the fused launch's output differs from the two launches'", c.n, c.k)
			}
		}
		cpuProbs, cpuGrad := engine.New(engine.Float32, c.n, c.k), engine.New(engine.Float32, c.n, c.k)
		closs, ccorrect, err := engine.SoftmaxCrossEntropy(cpuProbs, cpuGrad, logits, labels, c.eps, c.sc)
		opsMust(t, err)
		if ccorrect != correct {
			t.Errorf("N=%d K=%d: %d correct on the GPU, %d on the CPU", c.n, c.k, correct, ccorrect)
		}
		g, w := scalarPair(t, loss, closs)
		checkKernels(t, fused, "fused cross-entropy loss", g, w, 1e-6, 1e-6)
		checkKernels(t, fused, "fused softmax probs", probs, cpuProbs, 1e-9, 2e-6)
		// As the backward test's bound, plus the probabilities' own 2e-6.
		checkKernels(t, fused, "fused cross-entropy gradient", grad, cpuGrad, 1.2e-7*c.sc/float64(c.n), 3e-6)
	}
}

// On the GPU a logged step copies nothing to the host: two launches (the
// fused loss and the row sum), then one copy for all the steps at the read.
// Its records have the bits of SoftmaxCrossEntropy's own results on the GPU
// and agree with the CPU's; a log with records of one device refuses a step
// on the other.
func TestCUDALossLogCopiesOnceAtTheRead(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(43, 44))
	log := engine.NewLossLog(4)
	defer log.Release()
	var want, cpuWant []engine.StepLoss
	for step, c := range []struct{ n, k int }{{1, 3}, {37, 10}, {2100, 10}, {3, 1000}} { // 2100: three runs of rows
		logits, dlogits := devRandRange(t, rng, 5, nil, c.n, c.k)
		labels := randLabels(rng, c.n, c.k)
		newDev := func() *engine.Tensor { return dev(t, engine.New(engine.Float32, c.n, c.k)) }
		p, g := newDev(), newDev()
		loss, correct, err := engine.SoftmaxCrossEntropy(p, g, dlogits, labels, 0.1, 1)
		opsMust(t, err)
		want = append(want, engine.StepLoss{Loss: loss, Correct: correct})
		cp, cg := engine.New(engine.Float32, c.n, c.k), engine.New(engine.Float32, c.n, c.k)
		closs, ccorrect, err := engine.SoftmaxCrossEntropy(cp, cg, logits, labels, 0.1, 1)
		opsMust(t, err)
		cpuWant = append(cpuWant, engine.StepLoss{Loss: closs, Correct: ccorrect})

		lp, lg := newDev(), newDev()
		opsMust(t, cuda.StartProfile())
		err = engine.SoftmaxCrossEntropyLogged(lp, lg, dlogits, labels, 0.1, 1, log)
		prof, perr := cuda.StopProfile()
		opsMust(t, err)
		opsMust(t, perr)
		if prof.Launches != 2 || prof.Copies != 0 {
			t.Errorf("step %d: %d launches and %d copies to the host, want 2 and 0", step, prof.Launches, prof.Copies)
		}
		for _, pair := range [][2]*engine.Tensor{{p, lp}, {g, lg}} {
			a, err := engine.ToCPU(nil, pair[0])
			opsMust(t, err)
			b, err := engine.ToCPU(nil, pair[1])
			opsMust(t, err)
			if !bitsEqual(a, b) {
				t.Fatalf("step %d: the logged call's probabilities or gradient differ", step)
			}
		}
	}
	cpuLogits := engine.New(engine.Float32, 1, 3)
	err := engine.SoftmaxCrossEntropyLogged(engine.New(engine.Float32, 1, 3), engine.New(engine.Float32, 1, 3), cpuLogits, []int32{0}, 0, 1, log)
	if err == nil {
		t.Error("a CPU step into a log of GPU records: no error")
	}
	opsMust(t, cuda.StartProfile())
	got, err := log.Read(nil)
	prof, perr := cuda.StopProfile()
	opsMust(t, err)
	opsMust(t, perr)
	if prof.Copies != 1 {
		t.Errorf("the read made %d copies to the host, want 1", prof.Copies)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if math.Float64bits(got[i].Loss) != math.Float64bits(want[i].Loss) || got[i].Correct != want[i].Correct {
			t.Errorf("record %d: %+v, SoftmaxCrossEntropy gave %+v", i, got[i], want[i])
		}
		if got[i].Correct != cpuWant[i].Correct {
			t.Errorf("record %d: %+v, the CPU gave %+v", i, got[i], cpuWant[i])
		}
		g, w := scalarPair(t, got[i].Loss, cpuWant[i].Loss)
		checkKernels(t, []string{"xent_log_step"}, fmt.Sprintf("logged loss %d", i), g, w, 1e-6, 1e-6)
	}
}
