package trainer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kiln-ml/kiln/internal/userfile"
)

// Reading a run directory back, for kiln eval, predict and export --run and
// a --resume of a finished run; rundir.go says what each file holds.

// maxSummaryBytes bounds a summary.json read back: its confusion matrix
// grows with the square of the classes (indented, about 9 bytes a cell: 64
// MiB held 2,700 classes; this, 7,000).
const maxSummaryBytes = 512 << 20

// ReadModelInfo reads dir's model.json.
func ReadModelInfo(dir string) (ModelInfo, error) {
	var m ModelInfo
	b, err := userfile.ReadFile(filepath.Join(dir, ModelFile), 1<<20)
	if err != nil {
		return m, fmt.Errorf("no %s there (is it a kiln train run directory?): %w", ModelFile, err)
	}
	if err := json.Unmarshal(b, &m); err != nil || m.Model == "" {
		if err == nil {
			err = errors.New(`no "model" in it`)
		}
		return m, fmt.Errorf("%s does not describe a model: %w", ModelFile, err)
	}
	return m, nil
}

// ReadSummary reads dir's summary.json, which a finished run wrote last.
func ReadSummary(dir string) (*Summary, error) {
	b, err := userfile.ReadFile(filepath.Join(dir, SummaryFile), maxSummaryBytes)
	if err != nil {
		return nil, err
	}
	var sum Summary
	if err := json.Unmarshal(b, &sum); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, SummaryFile), err)
	}
	return &sum, nil
}

// RunWeights is the path of the weights a run offers: those its summary
// names (best.safetensors after --restore-best), else best.safetensors,
// else last.safetensors.
func RunWeights(dir string) (string, error) {
	var choices []string
	sum, err := ReadSummary(dir)
	switch {
	case err == nil && sum.Weights != "":
		choices = append(choices, filepath.Base(sum.Weights))
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		// Its choice unread, another file's weights would pass for the run's.
		return "", err
	}
	for _, name := range append(choices, BestWeights, LastWeights) {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return filepath.Join(dir, name), nil
		}
	}
	if _, err := os.Stat(filepath.Join(dir, CheckpointFile)); err == nil {
		return "", fmt.Errorf("no %s or %s there (the run has not finished an epoch): --weights %s takes the weights at its checkpoint",
			BestWeights, LastWeights, filepath.Join(dir, CheckpointFile))
	}
	return "", fmt.Errorf("no %s or %s there (the run has not finished an epoch)", BestWeights, LastWeights)
}
