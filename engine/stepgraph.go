package engine

import (
	"errors"

	"github.com/kiln-ml/kiln/cuda"
)

// StepGraph runs a GPU training step, once it repeats the step before, as
// one CUDA graph launch (cuda.StepGraph: verified against the step as it
// would run, so the same bits either way). Bracket each step with Begin and
// End. On the CPU, and under KILN_CUDA_CHECK (which reads every op back),
// it does nothing.
type StepGraph struct{ g *cuda.StepGraph }

// GraphStats counts what a StepGraph did.
type GraphStats = cuda.GraphStats

// NewStepGraph makes a StepGraph for steps on dev.
func NewStepGraph(dev Device) *StepGraph {
	if dev != CUDA || checkCUDA || !cuda.Ready() {
		return &StepGraph{}
	}
	return &StepGraph{g: cuda.NewStepGraph()}
}

// On reports whether steps may run as graphs.
func (s *StepGraph) On() bool { return s != nil && s.g != nil }

// Begin starts a step.
func (s *StepGraph) Begin() error {
	if !s.On() {
		return nil
	}
	return s.g.Begin()
}

// End ends the step; a step that ran as a graph was launched here.
func (s *StepGraph) End() error {
	if !s.On() {
		return nil
	}
	return s.g.End()
}

// Step runs step between Begin and End; the error is step's, End's, or
// both.
func (s *StepGraph) Step(step func() error) error {
	if err := s.Begin(); err != nil {
		return err
	}
	err := step()
	return errors.Join(err, s.End())
}

// Stats returns the counts so far (zero when off).
func (s *StepGraph) Stats() GraphStats {
	if !s.On() {
		return GraphStats{}
	}
	return s.g.Stats()
}

// Release frees the graph.
func (s *StepGraph) Release() {
	if s.On() {
		s.g.Release()
	}
}
