package trainer

import (
	"errors"

	"github.com/kiln-ml/kiln/engine"
)

// A GPU run's training steps go as one CUDA graph launch each once they
// repeat (engine.StepGraph, issue 17): the step's Go code runs as always,
// and the graph is launched only when the step matched the last one, so
// the bits are those of separate launches. Off with --no-cuda-graph; off
// for a run of several ranks (each step's all-reduce would end the graph
// there) and for regression (whose step reads its loss back).

// newStepGraph sets up the run's step graph, which is off unless the run
// trains a classifier alone on the GPU.
func (f *fitRun) newStepGraph() {
	t := f.t
	dev := t.device
	if f.c.NoCUDAGraph || t.distributed() || t.regressor != nil {
		dev = engine.CPU
	}
	f.graph = engine.NewStepGraph(dev)
}

// graphStep runs one step inside the graph's bracket.
func (f *fitRun) graphStep(step func() error) error {
	if err := f.graph.Begin(); err != nil {
		return err
	}
	err := step()
	return errors.Join(err, f.graph.End())
}

// endGraph logs what the graph did and frees it.
func (f *fitRun) endGraph() {
	if !f.graph.On() {
		return
	}
	s := f.graph.Stats()
	f.t.graphStats = s
	ev := f.t.Log.Debug()
	if s.Err != nil {
		ev = f.t.Log.Warn().AnErr("graph_error", s.Err)
	}
	ev.Int("steps", s.Steps).Int("replayed", s.Replays).Int("graphs_built", s.Builds).
		Int("nodes", s.Nodes).Int("node_updates", s.Updates).Str("last_left_plan", s.LastLeft).Msg("cuda graph")
	f.graph.Release()
}
