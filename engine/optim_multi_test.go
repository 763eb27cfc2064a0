package engine_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// multiSizes are the parameter lengths of the multi-tensor tests: one
// element, vector-awkward lengths, one just over a chunk of the GPU's table
// (2,048 elements) and one of many chunks and a ragged end, so that a
// parameter spans two chunks and more.
var multiSizes = []int{1, 7, 300, 2049, 33, 65537}

// TestSGDStepAllMatchesSGDStep: the multi-tensor step is each parameter's
// SGDStep, bit for bit, with the decay skipped where NoDecay says.
func TestSGDStepAllMatchesSGDStep(t *testing.T) {
	rng := rand.New(rand.NewPCG(71, 72))
	for _, c := range []engine.SGDConfig{
		{LR: 0.1, Momentum: 0.9, WeightDecay: 1e-2},
		{LR: 0.1, Momentum: 0.9, WeightDecay: 5e-4, Nesterov: true},
		{LR: 0.05, WeightDecay: 1e-2}, // no momentum: no buffers
	} {
		var all, one []engine.SGDParam
		for i, n := range multiSizes {
			p := engine.SGDParam{W: randTensor(rng, engine.Float32, n), NoDecay: i%2 == 1}
			if c.Momentum != 0 {
				p.Buf = engine.New(engine.Float32, n)
			}
			q := p
			q.W = p.W.Clone()
			if p.Buf != nil {
				q.Buf = p.Buf.Clone()
			}
			all, one = append(all, p), append(one, q)
		}
		for range 3 {
			for i := range all {
				g := randTensor(rng, engine.Float32, all[i].W.Len())
				all[i].G, one[i].G = g, g
				wantC := c
				if one[i].NoDecay {
					wantC.WeightDecay = 0
				}
				opsMust(t, engine.SGDStep(one[i].W, one[i].G, one[i].Buf, wantC))
			}
			opsMust(t, engine.SGDStepAll(all, c))
		}
		for i := range all {
			if !bitsEqual(all[i].W, one[i].W) || (all[i].Buf != nil && !bitsEqual(all[i].Buf, one[i].Buf)) {
				t.Fatalf("%+v: parameter %d (%d elements) differs from its SGDStep", c, i, all[i].W.Len())
			}
		}
	}
}

func TestAdamWStepAllMatchesAdamWStep(t *testing.T) {
	rng := rand.New(rand.NewPCG(73, 74))
	c := engine.AdamWConfig{LR: 1e-2, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 1e-2}
	var all, one []engine.AdamWParam
	for i, n := range multiSizes {
		p := engine.AdamWParam{W: randTensor(rng, engine.Float32, n), M: engine.New(engine.Float32, n),
			V: engine.New(engine.Float32, n), NoDecay: i%2 == 0}
		all = append(all, p)
		one = append(one, engine.AdamWParam{W: p.W.Clone(), M: p.M.Clone(), V: p.V.Clone(), NoDecay: p.NoDecay})
	}
	for step := 1; step <= 3; step++ {
		c.Step = step
		for i := range all {
			g := randTensor(rng, engine.Float32, all[i].W.Len())
			all[i].G, one[i].G = g, g
			wantC := c
			if one[i].NoDecay {
				wantC.WeightDecay = 0
			}
			opsMust(t, engine.AdamWStep(one[i].W, one[i].G, one[i].M, one[i].V, wantC))
		}
		opsMust(t, engine.AdamWStepAll(all, c))
	}
	for i := range all {
		if !bitsEqual(all[i].W, one[i].W) || !bitsEqual(all[i].M, one[i].M) || !bitsEqual(all[i].V, one[i].V) {
			t.Fatalf("parameter %d (%d elements) differs from its AdamWStep", i, all[i].W.Len())
		}
	}
}

// TestOptimStepAllErrors: a bad parameter is named by its index and nothing
// is updated; an empty list is no work.
func TestOptimStepAllErrors(t *testing.T) {
	w := engine.New(engine.Float32, 4)
	w.SetAt(0, 1)
	g, buf := engine.New(engine.Float32, 4), engine.New(engine.Float32, 4)
	g.SetAt(0, 1)
	c := engine.SGDConfig{LR: 1, Momentum: 0.9}
	for name, ps := range map[string][]engine.SGDParam{
		"short gradient": {{W: w, G: g, Buf: buf}, {W: w, G: engine.New(engine.Float32, 3), Buf: buf}},
		"no buffer":      {{W: w, G: g, Buf: buf}, {W: w, G: g}},
		"no gradient":    {{W: w, G: g, Buf: buf}, {W: w, Buf: buf}},
		"mixed dtypes":   {{W: w, G: g, Buf: buf}, {W: engine.New(engine.Float64, 4), G: engine.New(engine.Float64, 4), Buf: engine.New(engine.Float64, 4)}},
	} {
		err := engine.SGDStepAll(ps, c)
		var se *engine.ShapeError
		if !errors.As(err, &se) || se.Op != "SGDStepAll" {
			t.Fatalf("%s: got %v, want a ShapeError from SGDStepAll", name, err)
		}
		if !strings.Contains(err.Error(), "parameter=1") && !strings.Contains(err.Error(), "parameter 1:") {
			t.Errorf("%s: %v does not name parameter 1", name, err)
		}
		if w.At(0) != 1 {
			t.Fatalf("%s: the first parameter was updated before the error", name)
		}
	}
	opsMust(t, engine.SGDStepAll(nil, c))
	err := engine.AdamWStepAll([]engine.AdamWParam{{W: w, G: g, M: buf, V: engine.New(engine.Float32, 5)}},
		engine.AdamWConfig{LR: 1, Step: 1})
	opsShapeError(t, err, "AdamWStepAll")
	opsShapeError(t, engine.AdamWStepAll(nil, engine.AdamWConfig{LR: 1}), "AdamWStepAll")
}
