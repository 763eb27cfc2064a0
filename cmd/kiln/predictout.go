package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// prediction is one line of predict's output.
type prediction struct {
	Source string      `json:"source"`          // the image file, or test[i]
	Index  *int        `json:"index,omitempty"` // the test-split index
	Top    []classProb `json:"top,omitempty"`
	// Classification samples of a data set carry their true label.
	Label     *int   `json:"label,omitempty"`
	LabelName string `json:"label_name,omitempty"`
	Correct   *bool  `json:"correct,omitempty"`
	// Regression: the prediction and the true target, in the target's unit.
	Prediction *float64 `json:"prediction,omitempty"`
	Target     *float64 `json:"target,omitempty"`
	Unit       string   `json:"unit,omitempty"`
}

type classProb struct {
	Class int     `json:"class"`
	Name  string  `json:"name"`
	Prob  float64 `json:"prob"`
}

// printPredictions prints one line a sample: readable, or JSON for scripts.
func printPredictions(preds []prediction, asJSON bool) error {
	for _, p := range preds {
		if !asJSON {
			outln(p.String())
			continue
		}
		b, err := json.Marshal(p)
		if err != nil {
			return err
		}
		outln(string(b))
	}
	return nil
}

// String is the readable form of a prediction.
func (p prediction) String() string {
	var b strings.Builder
	b.WriteString(p.Source + ":")
	if p.Prediction != nil {
		fmt.Fprintf(&b, " %#.4g", *p.Prediction)
		if p.Target != nil {
			fmt.Fprintf(&b, "  (true %#.4g)", *p.Target)
		}
		if p.Unit != "" {
			fmt.Fprintf(&b, "  [%s]", p.Unit)
		}
		return b.String()
	}
	for i, c := range p.Top {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %s %.2f%%", c.Name, 100*c.Prob)
	}
	if p.Label != nil {
		mark := "✓"
		if !*p.Correct {
			mark = "✗"
		}
		fmt.Fprintf(&b, "  (true %s %s)", p.LabelName, mark)
	}
	return b.String()
}

// topK returns the k most probable classes, most probable first (ties by
// class index).
func topK(p []float64, k int, names []string) []classProb {
	idx := make([]int, len(p))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return p[idx[a]] > p[idx[b]] })
	out := make([]classProb, 0, k)
	for _, c := range idx[:min(k, len(idx))] {
		out = append(out, classProb{Class: c, Name: className(names, c), Prob: p[c]})
	}
	return out
}

func className(names []string, c int) string {
	if c >= 0 && c < len(names) {
		return names[c]
	}
	return strconv.Itoa(c)
}
