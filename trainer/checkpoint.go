package trainer

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/kiln-ml/kiln/internal/durable"

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
	// StopReason is why training ended before its last epoch (early
	// stopping, a callback): a resumed run does not train on.
	StopReason string `json:"stop_reason,omitempty"`
	// Train holds the current epoch's training figures so far, for a
	// checkpoint written mid-epoch (Ctrl-C).
	Train epochSums `json:"train"`
	// Files are the sizes of the run directory's appended files when the
	// checkpoint was written (rundir.go).
	Files map[string]int64 `json:"files,omitempty"`
	// Data is the SHA-256 of the data set the run trained on (every split's
	// samples, labels and targets): a resume on other data is refused.
	Data string `json:"data,omitempty"`
	// Machine is what computed the steps (machineOf): a resume elsewhere
	// goes on in float32's other last bits, and says so.
	Machine string `json:"machine,omitempty"`
}

// epochSums are an epoch's training figures so far.
type epochSums struct {
	LossSum float64 `json:"loss_sum"`
	Count   int     `json:"count"`
	Correct int     `json:"correct"`
}

// ReadRunState reads a checkpoint's run state alone, not its tensors.
func ReadRunState(path string) (RunState, error) {
	meta, err := safetensors.ReadMetadata(path)
	if err != nil {
		return RunState{}, damaged(err)
	}
	return parseRunState(path, meta)
}

// DamagedRunError is a run that cannot go on from its directory as it is:
// its checkpoint damaged, cut short or lost. Mending it is the user's
// (restoring the file); a tune stops on it, so that its --resume runs the
// trial again once it is mended.
type DamagedRunError struct{ Err error }

func (e *DamagedRunError) Error() string { return e.Err.Error() + "; " + mendAdvice }
func (e *DamagedRunError) Unwrap() error { return e.Err }

// damaged says what to do about a checkpoint that cannot be read as one
// (cut short by a power cut, damaged on disk); other errors (a permission)
// pass as they are.
func damaged(err error) error {
	var format *safetensors.FormatError
	if !errors.As(err, &format) {
		return err
	}
	return &DamagedRunError{fmt.Errorf("%w: the checkpoint is damaged or cut short, so the run cannot resume from it", err)}
}

// mendAdvice is what to do about a run whose checkpoint cannot be used.
const mendAdvice = "restore the file, or train again into another --run-dir"

func parseRunState(path string, meta map[string]string) (RunState, error) {
	raw, ok := meta[checkpointKey]
	if !ok {
		return RunState{}, fmt.Errorf("%s: not a Kiln checkpoint (no %s metadata)", path, checkpointKey)
	}
	var st RunState
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return RunState{}, fmt.Errorf("%s: bad checkpoint metadata: %w", path, err)
	}
	return st, nil
}

// check refuses a state that no run of epochs epochs of batches steps each
// could have written (a hand-edited or foreign checkpoint).
func (st RunState) check(epochs, batches int) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("checkpoint metadata: "+format+" (was the file edited?)", args...)
	}
	switch {
	case st.Epoch < 0 || st.Epoch > epochs:
		return bad("epoch %d is outside this run's 0..%d", st.Epoch, epochs)
	case st.Step < 0 || st.Step > epochs*batches:
		return bad("step %d is outside this run's 0..%d", st.Step, epochs*batches)
	case st.StopReason == "" && st.Epoch < epochs && (st.Step < st.Epoch*batches || st.Step >= (st.Epoch+1)*batches):
		return bad("step %d is not within epoch %d (%d steps an epoch)", st.Step, st.Epoch+1, batches)
	case st.StopReason == "" && st.Epoch == epochs && st.Step != epochs*batches:
		return bad("step %d does not end the run's %d steps", st.Step, epochs*batches)
	case st.StopReason != "" && (st.Epoch == 0 || st.Step <= (st.Epoch-1)*batches || st.Step > st.Epoch*batches):
		return bad("step %d does not end epoch %d", st.Step, st.Epoch)
	case !(st.Elapsed >= 0) || st.Train.Count < 0 || st.Train.Correct < 0 || st.Train.Correct > st.Train.Count:
		return bad("elapsed %v s, %d of %d samples right", st.Elapsed, st.Train.Correct, st.Train.Count)
	}
	for name, n := range st.Files {
		if n < 0 || !appendedFile(name) {
			return bad("file %q of %d bytes", name, n)
		}
	}
	return nil
}

const checkpointKey = "kiln.checkpoint"

// checkpointDigestKey holds the hex SHA-256 of the run state and every
// tensor (safetensors.Digest): a checkpoint damaged after it was written
// (a bit flipped on disk, an edit) is refused, not resumed from. Checkpoints
// from before it have none and are read as they were.
const checkpointDigestKey = "kiln.sha256"

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
	sum, err := safetensors.Digest(tensors, string(meta))
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return durable.WriteStream(path, func(w io.Writer) error {
		return safetensors.Write(w, tensors, map[string]string{checkpointKey: string(meta), "format": "kiln-checkpoint",
			checkpointDigestKey: hex.EncodeToString(sum[:])})
	})
}

// LoadCheckpoint restores what SaveCheckpoint wrote into model and opt and
// returns the run state. Schedule and EarlyStop come back as saved.
func LoadCheckpoint(path string, model layers.Layer, opt Optimizer, params []*layers.Param) (RunState, error) {
	tensors, meta, err := safetensors.ReadFile(path)
	if err != nil {
		return RunState{}, damaged(err)
	}
	st, err := parseRunState(path, meta)
	if err != nil {
		return RunState{}, err
	}
	if err := checkDigest(path, tensors, meta); err != nil {
		return RunState{}, err
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

// IsCheckpoint reports whether a safetensors file's metadata is a
// checkpoint's (SaveCheckpoint): a run's resumable state, not its weights.
func IsCheckpoint(meta map[string]string) bool { return meta["format"] == "kiln-checkpoint" }

// CheckpointModel is the model state inside a checkpoint's tensors (read
// with its metadata, checked against its digest), named as the model's.
func CheckpointModel(path string, tensors map[string]*engine.Tensor, meta map[string]string) (map[string]*engine.Tensor, error) {
	if err := checkDigest(path, tensors, meta); err != nil {
		return nil, err
	}
	state := map[string]*engine.Tensor{}
	for name, t := range tensors {
		if rest, ok := strings.CutPrefix(name, "model."); ok {
			state[rest] = t
		}
	}
	return state, nil
}

// checkDigest refuses a checkpoint whose tensors or run state are not what
// was written (checkpointDigestKey).
func checkDigest(path string, tensors map[string]*engine.Tensor, meta map[string]string) error {
	want, ok := meta[checkpointDigestKey]
	if !ok {
		return nil
	}
	sum, err := safetensors.Digest(tensors, meta[checkpointKey])
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(sum[:]); got != want {
		return &DamagedRunError{fmt.Errorf("%s is damaged: its contents do not match the SHA-256 written with them (a disk error, or an edit), "+
			"so the run cannot resume from it", path)}
	}
	return nil
}
