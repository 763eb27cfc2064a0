//go:build !mpi

package mpi

import (
	"slices"
	"strings"
	"testing"
)

func TestWorldOfOneWithoutMPI(t *testing.T) {
	clearLaunchEnv(t)
	w, err := Init()
	if err != nil {
		t.Fatal(err)
	}
	if w.Rank() != 0 || w.Size() != 1 || w.LocalRank() != 0 || w.LocalSize() != 1 {
		t.Errorf("rank %d size %d local %d/%d, want a world of one", w.Rank(), w.Size(), w.LocalRank(), w.LocalSize())
	}
	f32, f64 := []float32{1.5, -2}, []float64{3}
	if err := w.AllreduceSumFloat32(f32); err != nil || !slices.Equal(f32, []float32{1.5, -2}) {
		t.Errorf("AllreduceSumFloat32: %v, %v", f32, err)
	}
	if err := w.AllreduceSumFloat64(f64); err != nil || f64[0] != 3 {
		t.Errorf("AllreduceSumFloat64: %v, %v", f64, err)
	}
	if b, err := w.BroadcastBytes([]byte("x"), 0); err != nil || string(b) != "x" {
		t.Errorf("BroadcastBytes: %q, %v", b, err)
	}
	if err := w.BroadcastFloat32(f32, 1); err == nil {
		t.Error("BroadcastFloat32 from root 1 of 1: no error")
	}
	mine := []byte("abc")
	all, err := w.AllgatherBytes(mine)
	if err != nil || len(all) != 1 || string(all[0]) != "abc" || &all[0][0] == &mine[0] {
		t.Errorf("AllgatherBytes: %q, %v (want a copy)", all, err)
	}
	if err := w.Agree("anything", []byte{1}); err != nil {
		t.Errorf("Agree alone: %v", err)
	}
	if err := w.Finalize(); err != nil {
		t.Fatal(err)
	}
	if err := w.Barrier(); err == nil || !strings.Contains(err.Error(), "Finalize") {
		t.Errorf("Barrier after Finalize: %v", err)
	}
}

func TestInitRefusesSeveralRanksWithoutMPI(t *testing.T) {
	clearLaunchEnv(t)
	t.Setenv("OMPI_COMM_WORLD_SIZE", "2")
	if _, err := Init(); err == nil || !strings.Contains(err.Error(), NotBuiltMessage) {
		t.Errorf("Init as one of 2 ranks: %v, want %q", err, NotBuiltMessage)
	}
}
