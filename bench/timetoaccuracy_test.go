package bench

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/data"
)

// blobs is n 8×8 images in noise, class c (of four) brightening rows 2c
// and 2c+1 and column 2c: an MLP learns it in a few epochs (trainer's tests
// use the same set).
func blobs(t *testing.T, n int, seed uint64) *data.Dataset {
	rng := rand.New(rand.NewPCG(seed, 3))
	x := engine.New(engine.Float32, n, 1, 8, 8)
	labels := make([]int32, n)
	for i := 0; i < n; i++ {
		c := rng.IntN(4)
		labels[i] = int32(c)
		img := x.Float32()[i*64 : (i+1)*64]
		for p := range img {
			v := rng.NormFloat64() * 0.5
			if (p/16 == c) || (p%8 == 2*c) {
				v += 1.5
			}
			img[p] = float32(v)
		}
	}
	ds, err := data.NewClassification("blobs", x, labels, []string{"a", "b", "c", "d"})
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func blobConfig() trainer.Config {
	c := trainer.DefaultConfig()
	c.Model, c.Dataset, c.Epochs, c.Batch, c.LR, c.Schedule = "mlp", "blobs", 4, 32, 0.05, "cosine"
	return c
}

func TestTimeToAccuracyStopsAtTheTarget(t *testing.T) {
	c := blobConfig()
	c.Hidden, c.Epochs = 32, 6
	var seen []TTAEpoch
	res, err := TimeToAccuracy(context.Background(), TTAConfig{Config: c, Train: blobs(t, 512, 1), Test: blobs(t, 256, 3),
		Target: 0.9, LossEvery: 4, OnEpoch: func(e TTAEpoch) { seen = append(seen, e) }})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Reached || res.Epochs >= c.Epochs || res.BestAccuracy < 0.9 {
		t.Fatalf("want the 0.9 target reached before the last of %d epochs, got %+v", c.Epochs, res)
	}
	if len(seen) != res.Epochs || len(res.PerEpoch) != res.Epochs {
		t.Fatalf("%d epochs run but %d callbacks and %d records", res.Epochs, len(seen), len(res.PerEpoch))
	}
	last := res.PerEpoch[len(res.PerEpoch)-1]
	if last.TestAccuracy < 0.9 || last.Seconds != res.Seconds {
		t.Fatalf("last epoch %+v does not match the result (%.3f s)", last, res.Seconds)
	}
	for i := 1; i < len(res.PerEpoch); i++ {
		if res.PerEpoch[i-1].TestAccuracy >= 0.9 {
			t.Fatalf("epoch %d already reached the target but the run went on", i)
		}
	}
	// 512 samples in batches of 32: 16 steps per epoch, a loss point every 4.
	if want := res.Steps / 4; len(res.Curve) != want || res.Steps != 16*res.Epochs {
		t.Fatalf("%d steps, %d curve points (want %d)", res.Steps, len(res.Curve), want)
	}
	for i := 1; i < len(res.Curve); i++ {
		if res.Curve[i].Seconds < res.Curve[i-1].Seconds || res.Curve[i].Step != res.Curve[i-1].Step+4 {
			t.Fatalf("curve not ordered: %+v then %+v", res.Curve[i-1], res.Curve[i])
		}
	}
	if res.Curve[len(res.Curve)-1].Loss >= res.Curve[0].Loss {
		t.Fatalf("training loss did not fall: %v → %v", res.Curve[0].Loss, res.Curve[len(res.Curve)-1].Loss)
	}
	if res.Params == 0 || res.ImagesPerSec <= 0 {
		t.Fatalf("params %d, images/s %v", res.Params, res.ImagesPerSec)
	}
}

func TestTimeToAccuracyRefusesBadInput(t *testing.T) {
	c := blobConfig()
	c.Hidden = 32
	train, test := blobs(t, 64, 1), blobs(t, 64, 2)
	for _, tc := range []struct {
		name string
		cfg  TTAConfig
		want string
	}{
		{"no test data", TTAConfig{Config: c, Train: train, Target: 0.9}, "need training and test data"},
		{"target above 1", TTAConfig{Config: c, Train: train, Test: test, Target: 99}, "not an accuracy"},
		{"bad batch", TTAConfig{Config: func() trainer.Config { c := c; c.Batch = 0; return c }(), Train: train, Test: test, Target: 0.9}, "batch 0"},
		{"unknown model", TTAConfig{Config: func() trainer.Config { c := c; c.Model = "nope"; return c }(), Train: train, Test: test, Target: 0.9}, "nope"},
	} {
		if _, err := TimeToAccuracy(context.Background(), tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := TimeToAccuracy(ctx, TTAConfig{Config: c, Train: train, Test: test, Target: 0.9}); err == nil {
		t.Error("a cancelled context: want an error")
	}
}

func TestTimeToAccuracyStopsAtTheTimeCap(t *testing.T) {
	c := blobConfig()
	c.Hidden, c.Epochs = 32, 50
	res, err := TimeToAccuracy(context.Background(), TTAConfig{Config: c, Train: blobs(t, 512, 1), Test: blobs(t, 256, 3),
		Target: 1, MaxSeconds: 1e-9})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Capped || res.Epochs != 1 || len(res.PerEpoch) != 1 || res.Steps > 1 {
		t.Fatalf("want a run capped in its first epoch, got %+v", res)
	}
}

// Time to accuracy on the GPU (the benchmark suite's --device cuda) follows
// the CPU run: the same batches, steps and test checks, with the training
// set gathered on the device.
func TestCUDATimeToAccuracyFollowsTheCPU(t *testing.T) {
	cudaOrSkip(t)
	c := blobConfig()
	c.Hidden, c.Epochs = 32, 2
	train, test := blobs(t, 512, 1), blobs(t, 256, 3)
	run := func(d engine.Device) *TTARun {
		res, err := TimeToAccuracy(context.Background(), TTAConfig{Config: c, Train: train, Test: test,
			Target: 1, LossEvery: 4, Device: d})
		if err != nil {
			t.Fatalf("on %v: %v", d, err)
		}
		return res
	}
	cpu, gpu := run(engine.CPU), run(engine.CUDA)
	t.Logf("cpu epochs %+v\ngpu epochs %+v", cpu.PerEpoch, gpu.PerEpoch)
	if len(cpu.Curve) == 0 || len(gpu.Curve) == 0 {
		t.Fatalf("no loss curve: cpu %d points, gpu %d", len(cpu.Curve), len(gpu.Curve))
	}
	if a, b := cpu.Curve[0].Loss, gpu.Curve[0].Loss; math.Abs(a-b) > 1e-3*math.Max(1, math.Abs(a)) {
		t.Fatalf("first loss point: cpu %v, gpu %v", a, b)
	}
	for i := range min(len(cpu.PerEpoch), len(gpu.PerEpoch)) {
		a, b := cpu.PerEpoch[i], gpu.PerEpoch[i]
		if math.Abs(a.TestAccuracy-b.TestAccuracy) > 2.0/256 || math.Abs(a.TestLoss-b.TestLoss) > 1e-2*math.Max(1, a.TestLoss) {
			t.Fatalf("epoch %d: cpu %+v, gpu %+v", i+1, a, b)
		}
	}
}

// The suite's tasks run the recipes their comment and the README state:
// batch 128 at peak lr 0.1 for MNIST 99% (3 epochs) and Fashion-MNIST 90%
// (2), the rest the trainer's default recipe, with no validation split.
func TestTimeToAccuracyTaskRecipes(t *testing.T) {
	want := map[string]struct {
		batch, epochs int
		lr            float64
	}{"mnist-99": {128, 3, 0.1}, "fashion-90": {128, 2, 0.1}, "mnist01-99.8": {64, 1, 0.01}}
	tasks := ttaTasks(false)
	if len(tasks) != len(want) {
		t.Fatalf("%d tasks, want %d", len(tasks), len(want))
	}
	for _, task := range tasks {
		w, ok := want[task.ID]
		if !ok {
			t.Fatalf("unexpected task %s", task.ID)
		}
		c := task.config("cuda")
		def := trainer.DefaultConfigFor(task.Model, task.Dataset)
		if c.Batch != w.batch || c.Epochs != w.epochs || c.LR != w.lr || c.ValFraction != 0 || c.Device != "cuda" {
			t.Errorf("%s: batch %d, epochs %d, lr %g, val %g, device %s; want %d, %d, %g, 0, cuda",
				task.ID, c.Batch, c.Epochs, c.LR, c.ValFraction, c.Device, w.batch, w.epochs, w.lr)
		}
		if c.Optimizer != def.Optimizer || c.Schedule != def.Schedule || c.Momentum != def.Momentum ||
			c.Nesterov != def.Nesterov || c.WeightDecay != def.WeightDecay || c.Seed != def.Seed {
			t.Errorf("%s: %+v strays from the default recipe %+v", task.ID, c, def)
		}
	}
}
