package trainer

import (
	"context"
	"strings"
	"testing"
)

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
		{"bad batch", TTAConfig{Config: func() Config { c := c; c.Batch = 0; return c }(), Train: train, Test: test, Target: 0.9}, "batch 0"},
		{"unknown model", TTAConfig{Config: func() Config { c := c; c.Model = "nope"; return c }(), Train: train, Test: test, Target: 0.9}, "nope"},
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

func TestProcessMemoryReadsTheHighWaterMark(t *testing.T) {
	m := ProcessMemory()
	if m.RSSPeakBytes < 1<<20 || m.GoSysBytes < 1<<20 || m.GoHeapBytes <= 0 {
		t.Fatalf("implausible memory figures %+v", m)
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
