package trainer

import "github.com/kiln-ml/kiln/engine"

// A GPU run's training steps go as one CUDA graph launch each once they
// repeat (engine.StepGraph, issue 17): the step's Go code runs as always,
// and the graph is launched only when the step matched the last one, so
// the bits are those of separate launches. Off with --no-cuda-graph; off
// for a run of several ranks (each step's all-reduce would end the graph
// there) and for regression (whose step reads its loss back).

// NewStepGraph makes the StepGraph for this trainer's steps: to bracket
// each TrainOnBatchLogged (Begin, then End), and Release at the end. It does
// nothing unless the trainer trains a classifier alone on the GPU, without
// Config.NoCUDAGraph.
func (t *Trainer) NewStepGraph() *engine.StepGraph {
	dev := t.device
	if t.Config.NoCUDAGraph || t.distributed() || t.regressor != nil {
		dev = engine.CPU
	}
	return engine.NewStepGraph(dev)
}

// newStepGraph sets up the run's step graph.
func (f *fitRun) newStepGraph() { f.graph = f.t.NewStepGraph() }

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
