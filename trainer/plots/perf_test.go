package plots

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kiln-ml/kiln/trainer"
)

// writeLongRun writes a metrics.jsonl of n noisy records, a validation and
// a training record in turn, as a long run that validates every step does.
func writeLongRun(t testing.TB, dir string, n int) int64 {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	var b bytes.Buffer
	for i := range n {
		step := i/2 + 1
		split := "val"
		if i%2 == 1 {
			split = "train"
		}
		loss := 2*math.Exp(-float64(step)/float64(n)) + 0.5*rng.Float64()
		acc := 1 - loss/3
		line, err := json.Marshal(trainer.MetricsRecord{Time: "2026-11-25T10:00:00.123456789Z", Step: step, Epoch: float64(step) / 1000,
			Split: split, Loss: loss, Accuracy: &acc, LR: 0.1 * rng.Float64(), Wall: float64(step) / 7, ImagesPS: 9000 + rng.Float64()})
		if err != nil {
			t.Fatal(err)
		}
		b.Write(append(line, '\n'))
	}
	if err := os.WriteFile(filepath.Join(dir, trainer.MetricsFile), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return int64(b.Len())
}

// Drawing is linear in the number of records: a line through more points
// than the chart has pixel columns is thinned to what can be seen. Before,
// the rasteriser's cost grew with the square of the points: 20,000 noisy
// records took 20 s on a 2-core Xeon, so 200,000 would take half an hour.
// The bound is ten times what the linear drawing takes on that machine.
func TestWriteRunManyRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	n := 200_000
	if raceEnabled { // the race detector slows decoding tenfold
		n = 40_000
	}
	dir := t.TempDir()
	size := writeLongRun(t, dir, n)
	start := time.Now()
	rep, err := WriteRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	written(t, rep, LossPNG, AccuracyPNG, LRPNG)
	t.Logf("%d records (%.1f MB) drawn in %v", n, float64(size)/1e6, took.Round(time.Millisecond))
	if took > 30*time.Second {
		t.Errorf("%d records took %v to draw: more than linear", n, took)
	}
}

// BenchmarkWriteRun draws a run of 20,000 records, ns/op per run.
func BenchmarkWriteRun(b *testing.B) {
	dir := b.TempDir()
	writeLongRun(b, dir, 20_000)
	for b.Loop() {
		if _, err := WriteRun(dir); err != nil {
			b.Fatal(err)
		}
	}
}
