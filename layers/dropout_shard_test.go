package layers

import (
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// Two ranks' dropout layers, each told its rows of a global batch of 5
// (3+2), drop exactly the units one layer drops on the whole batch, step
// after step, and end with the same stream position; a rank with an empty
// shard (SkipBatch) keeps its stream with the others.
func TestDropoutShardsDrawTheWholeBatchsMasks(t *testing.T) {
	const rows, cols = 5, 7
	whole := NewDropout(0.5, 9)
	ranks := []*Dropout{NewDropout(0.5, 9), NewDropout(0.5, 9)}
	idle := NewDropout(0.5, 9)
	x := engine.New(engine.Float32, rows, cols)
	for i := range x.Float32() {
		x.Float32()[i] = 1
	}
	for step := range 3 {
		want, err := whole.Forward(x)
		if err != nil {
			t.Fatal(err)
		}
		start := 0
		for r, n := range []int{3, 2} {
			part, err := x.Rows(start, n)
			if err != nil {
				t.Fatal(err)
			}
			ranks[r].Shard(start, rows)
			got, err := ranks[r].Forward(part)
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range got.Float32() {
				if w := want.Float32()[start*cols+i]; v != w {
					t.Fatalf("step %d rank %d unit %d: %v, one process %v", step, r, i, v, w)
				}
			}
			start += n
		}
		if step == 0 {
			idle.Shard(0, rows)
			if _, err := idle.Forward(x); err != nil { // learns the row size
				t.Fatal(err)
			}
		} else if err := idle.SkipBatch(); err != nil {
			t.Fatal(err)
		}
		for r, d := range append(ranks, idle) {
			if d.RNGState() != whole.RNGState() {
				t.Fatalf("step %d: rank %d's stream at %+v, one process's at %+v", step, r, d.RNGState(), whole.RNGState())
			}
		}
	}
}
