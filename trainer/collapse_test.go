package trainer

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/kiln-ml/kiln/layers"
)

func TestCollapsedClass(t *testing.T) {
	for _, c := range []struct {
		conf  [][]int
		class int
		ok    bool
	}{
		{[][]int{{5, 0}, {7, 0}}, 0, true},                  // every sample predicted 0
		{[][]int{{0, 0, 3}, {0, 0, 0}, {0, 0, 9}}, 2, true}, // two true classes, one column
		{[][]int{{5, 1}, {7, 0}}, 0, false},                 // one sample predicted 1
		{[][]int{{5, 0}, {0, 7}}, 0, false},                 // a working classifier
		{[][]int{{5, 0}, {0, 0}}, 0, false},                 // one true class only: nothing to say
		{[][]int{{0, 0}, {0, 0}}, 0, false},                 // no samples
	} {
		class, ok := collapsedClass(c.conf)
		if ok != c.ok || (ok && class != c.class) {
			t.Errorf("collapsedClass(%v) = %d, %v; want %d, %v", c.conf, class, ok, c.class, c.ok)
		}
	}
}

// A run whose network answers one class for everything says so, once on
// validation and once on the test set: here every weight starts at zero, so
// the hidden ReLUs are dead and only the head's bias can move.
func TestFitWarnsWhenTheModelPredictsOneClass(t *testing.T) {
	c := blobConfig()
	c.Epochs, c.LR = 2, 1e-6
	tr := newBlobTrainer(t, c, "", false)
	_, params := layers.Params(tr.Model)
	for _, p := range params {
		p.Value.Zero()
	}
	var log bytes.Buffer
	tr.Log = zerolog.New(&log)
	if _, err := tr.Fit(context.Background(), blobSplits(t)); err != nil {
		t.Fatal(err)
	}
	out := log.String()
	for _, split := range []string{"validation", "test"} {
		if n := strings.Count(out, "for every "+split+" sample"); n != 1 {
			t.Errorf("%d collapse warnings for %s, want 1; log:\n%s", n, split, out)
		}
	}

	// A run that learns says nothing of the kind.
	tr = newBlobTrainer(t, blobConfig(), "", false)
	log.Reset()
	tr.Log = zerolog.New(&log)
	if _, err := tr.Fit(context.Background(), blobSplits(t)); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(log.String(), "collapsed") {
		t.Errorf("a learning run warned of a collapse:\n%s", log.String())
	}
}

// A short run is told it may not have learned yet, a long one that it has
// collapsed.
func TestCollapseWarningWeighsTheRunsLength(t *testing.T) {
	conf := [][]int{{0, 5}, {0, 4}}
	for _, c := range []struct {
		steps     int
		want, not string
	}{
		{9, "after only 9 training steps: it may not have learned yet", "dead ReLUs"},
		{fewStepsToJudge, "training has collapsed (dead ReLUs or diverged weights)", "after only"},
	} {
		var log bytes.Buffer
		tr := &Trainer{Log: zerolog.New(&log)}
		if !tr.warnIfCollapsed("test", conf, []string{"cat", "dog"}, c.steps) {
			t.Fatalf("%d steps: no warning for %v", c.steps, conf)
		}
		if out := log.String(); !strings.Contains(out, c.want) || strings.Contains(out, c.not) ||
			!strings.Contains(out, "predicts class dog for every test sample") {
			t.Errorf("%d steps: the warning reads %s", c.steps, out)
		}
	}
}
