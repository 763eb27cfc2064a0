package trainer

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/kiln-ml/kiln/layers"
)

func TestFindLRSuggestsASaneRateAndLeavesTheModelAsItWas(t *testing.T) {
	c := blobConfig()
	tr := newBlobTrainer(t, c, "", false)
	before := map[string][]float32{}
	for name, v := range layers.FullState(tr.Model) {
		before[name] = slices.Clone(v.Float32())
	}
	res, err := tr.FindLR(context.Background(), blobs(t, 512, 1), LRFindOptions{Start: 1e-6, End: 100, Steps: 120})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d points, suggested %.3g, min-loss lr %.3g", len(res.Points), res.Suggested, res.MinLossLR)
	n := len(res.Points)
	if n < 60 || n > 120 || !res.Diverged {
		t.Errorf("%d points, diverged %v: SGD should blow up well before lr 100", n, res.Diverged)
	}
	for i, p := range res.Points {
		if i > 0 && !(p.LR > res.Points[i-1].LR) {
			t.Fatalf("lr does not rise at step %d", i)
		}
		if math.IsNaN(p.Smoothed) || math.IsInf(p.Smoothed, 0) {
			t.Fatalf("step %d: smoothed loss %v", i, p.Smoothed)
		}
	}
	// The rate rises by (100/1e-6)^(1/119) per step from 1e-6.
	if p := res.Points[60]; math.Abs(p.LR/(1e-6*math.Pow(1e8, 60.0/119))-1) > 1e-9 {
		t.Errorf("lr at step 60: %v", p.LR)
	}
	// This mlp trains well at 0.05 (blobConfig): the suggestion must be of
	// that order, below where the loss is lowest.
	if !(res.Suggested >= 1e-3 && res.Suggested <= 1) || res.Suggested > res.MinLossLR {
		t.Errorf("suggested lr %v (min-loss lr %v)", res.Suggested, res.MinLossLR)
	}
	first, low := res.Points[0].Smoothed, math.Inf(1)
	for _, p := range res.Points {
		low = math.Min(low, p.Smoothed)
	}
	if low > 0.5*first {
		t.Errorf("the smoothed loss never fell much: from %v to %v", first, low)
	}
	for name, v := range layers.FullState(tr.Model) {
		if !slices.Equal(v.Float32(), before[name]) {
			t.Fatalf("%s changed: the range test must put the model back", name)
		}
	}
	// And the trainer still trains from where it was.
	if _, err := tr.Fit(context.Background(), blobSplits(t)); err != nil {
		t.Fatal(err)
	}
}

func TestFindLROptionsAreChecked(t *testing.T) {
	tr := newBlobTrainer(t, blobConfig(), "", false)
	for _, o := range []LRFindOptions{{Start: 1, End: 0.1}, {Start: -1}, {Steps: 3}, {Diverge: 0.5}, {End: math.Inf(1)}} {
		if _, err := tr.FindLR(context.Background(), blobs(t, 64, 1), o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	if _, err := tr.FindLR(context.Background(), nil, LRFindOptions{}); err == nil {
		t.Error("no data accepted")
	}
}

func TestSuggestLRFindsTheSteepestFall(t *testing.T) {
	// A loss that falls fastest at lr 1e-2 (a logistic in log lr) and is
	// lowest near 1.
	var pts []LRPoint
	for i := 0; i < 101; i++ {
		lr := math.Pow(10, -6+6.5*float64(i)/100)
		x := math.Log10(lr)
		loss := 2/(1+math.Exp(3*(x+2))) + 0.1
		if x > 0 {
			loss += x * x * 5
		}
		pts = append(pts, LRPoint{Step: i, LR: lr, Smoothed: loss})
	}
	steep, minLR, rule := suggestLR(pts)
	if math.Abs(math.Log10(steep)+2) > 0.1 || rule != SuggestSteepest {
		t.Errorf("steepest fall at %v, want 1e-2", steep)
	}
	if math.Abs(math.Log10(minLR)) > 0.5 {
		t.Errorf("minimum at %v, want about 1", minLR)
	}
	if s, m, rule := suggestLR(pts[:5]); s != m/10 || rule != SuggestMinOver10 {
		t.Errorf("too short a curve: %v (%s), want the min-loss/10 rule (%v)", s, rule, m/10)
	}
	// A loss that only rises: lowest at the first lr, so no suggestion (a
	// tenth of the first lr, below the range, was given as the steepest fall).
	rising := make([]LRPoint, 20)
	for i := range rising {
		rising[i] = LRPoint{Step: i, LR: math.Pow(10, 5+float64(i)/6), Smoothed: 2 + float64(i)}
	}
	if s, _, rule := suggestLR(rising); s != 0 || rule != SuggestNone {
		t.Errorf("a rising loss: suggested %v (%s), want none", s, rule)
	}
}
