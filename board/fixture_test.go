package board

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Fixture run directories, written to the run directory contract
// (trainer/rundir.go) from the format as documented, independently of the
// writer, so that the board is checked against the contract itself.

type fixture struct {
	Steps     int // training steps; validation every 10
	Classes   int
	Params    []string // histogrammed parameters
	Filters   [4]int   // first-layer weight shape
	Samples   int
	Attention int // CBAM maps (over samples 0..n-1)
	SGU       int // tokens of one SGU layer (a square), 0 for none
	Summary   bool
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, b)
}

// metricsLine is one metrics.jsonl record.
func metricsLine(step int, epoch float64, split string, loss, acc, lr float64) string {
	m := map[string]any{
		"time": "2026-11-25T10:00:00Z", "step": step, "epoch": epoch, "split": split,
		"loss": loss, "accuracy": acc, "lr": lr, "wall_seconds": float64(step) / 10,
	}
	if split == "train" {
		m["images_per_sec"] = 9000.0
	}
	b, _ := json.Marshal(m)
	return string(b) + "\n"
}

func writeFixtureRun(t testing.TB, dir string, f fixture) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(len(dir)), 7))
	var metrics strings.Builder
	perEpoch := 20
	for s := 10; s <= f.Steps; s += 10 {
		ep := float64(s) / float64(perEpoch)
		loss := 2 * math.Exp(-float64(s)/30)
		metrics.WriteString(metricsLine(s, ep, "val", loss+0.05*rng.Float64(), 1-loss/2.5, 0.05*(1-float64(s)/float64(f.Steps+1))))
		if s%perEpoch == 0 {
			metrics.WriteString(metricsLine(s, ep, "train", loss*0.9, 1-loss/2.4, 0.05*(1-float64(s)/float64(f.Steps+1))))
		}
	}
	writeFile(t, filepath.Join(dir, "metrics.jsonl"), []byte(metrics.String()))

	var hist strings.Builder
	for s := 10; s <= f.Steps; s += 10 {
		var params []map[string]any
		for _, name := range f.Params {
			for _, kind := range []string{"weight", "grad"} {
				spread := 0.1 + float64(s)/1000
				if kind == "grad" {
					spread = 0.01
				}
				edges := make([]float64, 31)
				counts := make([]int, 30)
				for i := range edges {
					edges[i] = -3*spread + 6*spread*float64(i)/30
				}
				for i := range counts {
					x := (float64(i) - 14.5) / 5
					counts[i] = int(1000 * math.Exp(-x*x/2))
				}
				params = append(params, map[string]any{"name": name, "kind": kind, "min": edges[0], "max": edges[30], "edges": edges, "counts": counts})
			}
		}
		b, _ := json.Marshal(map[string]any{"step": s, "epoch": float64(s) / float64(perEpoch), "params": params})
		hist.Write(append(b, '\n'))
	}
	if len(f.Params) > 0 {
		writeFile(t, filepath.Join(dir, "histograms.jsonl"), []byte(hist.String()))
	}

	classes := make([]string, f.Classes)
	for i := range classes {
		classes[i] = fmt.Sprint(i)
	}
	v := map[string]any{"step": f.Steps, "classes": classes}
	if o, i, kh, kw := f.Filters[0], f.Filters[1], f.Filters[2], f.Filters[3]; o > 0 {
		data := make([]float64, o*i*kh*kw)
		for k := range data {
			data[k] = rng.NormFloat64() * 0.2
		}
		v["filters"] = map[string]any{"name": "conv1.weight", "shape": []int{o, i, kh, kw}, "data": data}
	}
	var samples []map[string]any
	for s := 0; s < f.Samples; s++ {
		px := make([]float64, 28*28)
		label := s % f.Classes
		for p := range px {
			y, x := p/28, p%28
			if math.Hypot(float64(y-14), float64(x-14)) < float64(4+label) {
				px[p] = 0.9
			}
		}
		pred := label
		if s%5 == 3 {
			pred = (label + 1) % f.Classes
		}
		samples = append(samples, map[string]any{"index": 100 + s, "label": label, "pred": pred, "prob": 0.5 + 0.05*float64(s%10), "shape": []int{1, 28, 28}, "pixels": px})
	}
	v["samples"] = samples
	conf := make([][]int, f.Classes)
	for i := range conf {
		conf[i] = make([]int, f.Classes)
		for j := range conf[i] {
			if i == j {
				conf[i][j] = 90
			} else if (i+1)%f.Classes == j {
				conf[i][j] = 3
			}
		}
	}
	v["confusion"] = conf
	var att []map[string]any
	for s := 0; s < f.Attention; s++ {
		d := make([]float64, 14*14)
		for p := range d {
			d[p] = 1 / (1 + math.Exp(-float64(p%14-7)))
		}
		att = append(att, map[string]any{"layer": "cbam1.spatial", "kind": "cbam_spatial", "sample": 100 + s, "shape": []int{14, 14}, "data": d})
	}
	if len(att) > 0 {
		v["attention"] = att
	}
	if T := f.SGU; T > 0 {
		d := make([]float64, T*T)
		for k := range d {
			d[k] = rng.NormFloat64() * 0.1
		}
		v["sgu"] = []map[string]any{{"layer": "blocks.0.sgu", "shape": []int{T, T}, "data": d}}
	}
	writeJSON(t, filepath.Join(dir, "visuals.json"), v)
	writeFile(t, filepath.Join(dir, "config.yaml"), []byte("model: lenet\ndataset: mnist\nlr: 0.05\n"))
	if f.Summary {
		writeJSON(t, filepath.Join(dir, "summary.json"), map[string]any{
			"model": "lenet", "dataset": "mnist", "params": 61706, "test_accuracy": 0.97, "test_loss": 0.1,
			"epochs_run": f.Steps / perEpoch, "stopped_early": false, "stop_reason": "epochs done", "train_images_per_sec": 9000,
		})
	}
}

// writeFixtureTune writes DIR/results.csv as kiln tune does (trial, status,
// the metric, epochs, steps, seconds, other metrics, error, then the searched
// settings; best first) and a trial run directory DIR/trials/NNN per row.
func writeFixtureTune(t *testing.T, dir string, trials int) {
	t.Helper()
	var csv strings.Builder
	csv.WriteString("trial,status,val_acc,epochs,steps,seconds,val_loss,error,batch,lr,optimizer\n")
	opts := []string{"sgd", "adamw"}
	for i := trials - 1; i >= 0; i-- {
		status, epochs := "done", 3
		if i == 0 {
			status, epochs = "stopped", 1
		}
		fmt.Fprintf(&csv, "%03d,%s,%.4f,%d,%d,%.2f,%.4f,,%d,%g,%s\n", i, status, 0.9+0.01*float64(i%4), epochs, 20*epochs, 1.5*float64(epochs),
			0.3-0.02*float64(i%4), 32<<(i%3), 0.001*math.Pow(3, float64(i)), opts[i%2])
		writeFixtureRun(t, filepath.Join(dir, "trials", fmt.Sprintf("%03d", i)), fixture{Steps: 40 + 10*i, Classes: 10, Summary: true})
	}
	writeFile(t, filepath.Join(dir, "results.csv"), []byte(csv.String()))
}
