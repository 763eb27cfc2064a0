package layers

import (
	"math"
	"testing"
)

// CountParamsFor must agree with the built model for every zoo model, at
// every input shape and knob setting the CLI can produce, and refuse exactly
// what Build refuses.
func TestCountParamsForMatchesBuild(t *testing.T) {
	specs := []Spec{
		{Channels: 1, Height: 28, Width: 28, Classes: 10},
		{Channels: 3, Height: 32, Width: 32, Classes: 10},
		{Channels: 1, Height: 28, Width: 28, Regression: true},
		{Channels: 7, Height: 1, Width: 1, Classes: 3},   // a csv's features
		{Channels: 2, Height: 12, Width: 16, Classes: 2}, // not square
		{Channels: 1, Height: 8, Width: 8, Classes: 4, Hidden: 24, Depth: 3},
		{Channels: 3, Height: 16, Width: 16, Classes: 5, Hidden: 20},
		{Channels: 1, Height: 16, Width: 16, Classes: 5, Depth: 1},
		{Channels: 1, Height: 9, Width: 9, Classes: 2, Dropout: 0.5},
		{Channels: 1, Height: 3, Width: 3, Classes: 2},   // too small for some
		{Channels: 1, Height: 28, Width: 28, Classes: 0}, // no head
		{Channels: 0, Height: 28, Width: 28, Classes: 10},
	}
	for _, name := range ModelNames() {
		for _, s := range specs {
			got, cerr := CountParamsFor(name, s)
			m, berr := Build(name, s)
			if (cerr == nil) != (berr == nil) {
				t.Errorf("%s %+v: CountParamsFor error %v, Build error %v", name, s, cerr, berr)
				continue
			}
			if berr != nil {
				continue
			}
			if want := int64(CountParams(m)); got != want {
				t.Errorf("%s %+v: CountParamsFor %d, the built model has %d", name, s, got, want)
			}
		}
	}
	if _, err := CountParamsFor("resnet", specs[0]); err == nil {
		t.Error("unknown model counted")
	}
}

// A width that no machine could hold is counted, without allocating and
// without overflowing, as at least what it is.
func TestCountParamsForHuge(t *testing.T) {
	s := Spec{Channels: 1, Height: 28, Width: 28, Classes: 10, Hidden: 100_000_000}
	n, err := CountParamsFor("mlp", s)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(1e16); n < want {
		t.Errorf("mlp of width 1e8: %d parameters, want more than %d", n, want)
	}
	s.Hidden, s.Depth = math.MaxInt, math.MaxInt
	for _, name := range []string{"mlp", "gmlp", "cnn"} {
		if n, err := CountParamsFor(name, s); err != nil || n != math.MaxInt64 {
			t.Errorf("%s of width and depth MaxInt: %d, %v; want MaxInt64 (saturated)", name, n, err)
		}
	}
}
