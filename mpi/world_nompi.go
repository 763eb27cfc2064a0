//go:build !mpi

package mpi

import (
	"errors"
	"os"
)

// Built reports whether this binary has MPI in it (the mpi build tag).
const Built = false

// World is the whole job. In a build without MPI it is this one process:
// the collectives leave their buffers as they are.
type World struct {
	finalized bool
}

var errFinalized = errors.New("mpi: world used after Finalize")

// Init returns a world of one process, or an error when a launcher started
// this process as one of several, which a build without MPI cannot join.
func Init() (*World, error) {
	if err := errNotBuilt(); err != nil {
		return nil, err
	}
	return &World{}, nil
}

func (w *World) Rank() int      { return 0 }
func (w *World) Size() int      { return 1 }
func (w *World) LocalRank() int { return 0 }
func (w *World) LocalSize() int { return 1 }

func (w *World) check() error {
	if w.finalized {
		return errFinalized
	}
	return nil
}

func (w *World) AllreduceSumFloat32(buf []float32) error { return w.check() }
func (w *World) AllreduceSumFloat64(buf []float64) error { return w.check() }

// Pending is an all-reduce under way; in a world of one it has ended.
type Pending struct{}

func (w *World) IallreduceSumFloat32(buf []float32) (*Pending, error) { return &Pending{}, w.check() }
func (p *Pending) Test() (bool, error)                                { return true, nil }
func (p *Pending) Wait() error                                        { return nil }
func (w *World) Barrier() error                                       { return w.check() }

func (w *World) BroadcastFloat32(buf []float32, root int) error {
	if err := w.check(); err != nil {
		return err
	}
	return checkRoot(root, 1)
}

func (w *World) BroadcastBytes(buf []byte, root int) ([]byte, error) {
	if err := w.check(); err != nil {
		return nil, err
	}
	return buf, checkRoot(root, 1)
}

func (w *World) AllgatherBytes(b []byte) ([][]byte, error) {
	if err := w.check(); err != nil {
		return nil, err
	}
	return [][]byte{append([]byte(nil), b...)}, nil
}

func (w *World) Finalize() error {
	w.finalized = true
	return nil
}

// Abort ends the process with code: there are no other ranks to end.
func (w *World) Abort(code int) { os.Exit(code) }
