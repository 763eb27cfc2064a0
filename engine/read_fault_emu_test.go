//go:build cudaemu && !cuda && cgo

package engine_test

import (
	"errors"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// A failed device read reaches the caller as an error, never as a NaN that
// looks like the data's: ValuesErr, DenseErr, Get and NonFinite return it
// (At, Values and Dense, for CPU tensors and tests, give NaN).
func TestCUDAFailedReadIsAnErrorNotANaN(t *testing.T) {
	cudaOrSkip(t)
	x := dev(t, engine.New(engine.Float32, 2, 3))
	defer x.Release()
	failDevice(t)
	if _, err := x.ValuesErr(); !errors.Is(err, errInjected) {
		t.Errorf("ValuesErr: %v, want the device's error", err)
	}
	if _, err := x.DenseErr(); !errors.Is(err, errInjected) {
		t.Errorf("DenseErr: %v, want the device's error", err)
	}
	if _, err := x.Get(1); !errors.Is(err, errInjected) {
		t.Errorf("Get: %v, want the device's error", err)
	}
	if bad, err := x.NonFinite(); bad || !errors.Is(err, errInjected) {
		t.Errorf("NonFinite: %v, %v; want false and the device's error", bad, err)
	}
	defer func() {
		if recover() == nil {
			t.Error("HasNaN blamed the data for a failed device check instead of panicking")
		}
	}()
	x.HasNaN()
}

// Release frees only what the tensor owns: a view's Release does nothing,
// the owner's frees the memory once, and EnsureOn replaces a released
// buffer instead of reusing it.
func TestCUDAReleaseFreesWhatTheOwnerOwns(t *testing.T) {
	cudaOrSkip(t)
	x := dev(t, engine.New(engine.Float32, 4, 3))
	v, err := x.Reshape(3, 4)
	if err != nil {
		t.Fatal(err)
	}
	v.Release()
	if x.Released() {
		t.Fatal("a view's Release freed its owner's memory")
	}
	x.Release()
	x.Release()
	if !x.Released() || !v.Released() {
		t.Fatal("Release did not free the memory (seen through the view too)")
	}
	y, err := engine.EnsureOn(x, x, 4, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer y.Release()
	if y == x || y.Released() {
		t.Fatal("EnsureOn reused a released buffer")
	}
}
