package trainer

import (
	"encoding/json"
	"fmt"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/engine/safetensors"
	"github.com/kiln-ml/kiln/layers"
)

// RunState is everything besides tensors that a resumed run needs to carry
// on exactly where it stopped.
type RunState struct {
	Epoch     int                `json:"epoch"` // epochs completed
	Step      int                `json:"step"`  // optimiser steps taken
	Optimizer map[string]float64 `json:"optimizer,omitempty"`
	Schedule  *Schedule          `json:"schedule,omitempty"`
	EarlyStop *EarlyStopping     `json:"early_stop,omitempty"`
	Config    json.RawMessage    `json:"config,omitempty"` // the run's configuration, checked on resume
	Elapsed   float64            `json:"elapsed_seconds"`  // training time so far
}

const checkpointKey = "kiln.checkpoint"

// SaveCheckpoint writes model state (parameters, buffers, internal state),
// optimiser state and st into one safetensors file, atomically: a kill at any
// moment leaves the previous checkpoint intact.
func SaveCheckpoint(path string, model layers.Layer, opt Optimizer, params []*layers.Param, st RunState) error {
	tensors := map[string]*engine.Tensor{}
	for name, t := range layers.FullState(model) {
		tensors["model."+name] = t
	}
	ot, scalars := opt.State(params)
	for name, t := range ot {
		tensors["optim."+name] = t
	}
	st.Optimizer = scalars
	meta, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return safetensors.WriteFile(path, tensors, map[string]string{checkpointKey: string(meta), "format": "kiln-checkpoint"})
}

// LoadCheckpoint restores what SaveCheckpoint wrote into model and opt and
// returns the run state. Schedule and EarlyStop come back as saved.
func LoadCheckpoint(path string, model layers.Layer, opt Optimizer, params []*layers.Param) (RunState, error) {
	tensors, meta, err := safetensors.ReadFile(path)
	if err != nil {
		return RunState{}, err
	}
	var st RunState
	raw, ok := meta[checkpointKey]
	if !ok {
		return RunState{}, fmt.Errorf("%s: not a Kiln checkpoint (no %s metadata)", path, checkpointKey)
	}
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return RunState{}, fmt.Errorf("%s: bad checkpoint metadata: %w", path, err)
	}
	modelState := map[string]*engine.Tensor{}
	optState := map[string]*engine.Tensor{}
	for name, t := range tensors {
		switch {
		case len(name) > 6 && name[:6] == "model.":
			modelState[name[6:]] = t
		case len(name) > 6 && name[:6] == "optim.":
			optState[name[6:]] = t
		}
	}
	if err := layers.LoadState(model, modelState); err != nil {
		return RunState{}, fmt.Errorf("%s: %w", path, err)
	}
	want, _ := opt.State(params)
	for name, dst := range want {
		src, ok := optState[name]
		if !ok || src.Len() != dst.Len() {
			return RunState{}, fmt.Errorf("%s: optimiser state %q missing or of the wrong size (was the optimiser changed?)", path, name)
		}
		if err := dst.CopyFrom(src); err != nil {
			return RunState{}, err
		}
	}
	opt.SetScalars(st.Optimizer)
	return st, nil
}
