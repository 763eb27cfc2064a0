package tune

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/kiln-ml/kiln/cuda"
	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/trainer"
)

// Trials run one after another in one process, each on a model of its own:
// on the device (the emulator in CI) each gives back all the memory it took,
// so a long tune does not fill the GPU with finished trials' models.
func TestCUDATrialsGiveTheirMemoryBack(t *testing.T) {
	if _, err := engine.OpenDevice(engine.CUDA); err != nil {
		t.Skipf("skipped: no CUDA device (%v)", err)
	}
	c := tinyBase(t)
	trainer.SetDefaultDevice(engine.CUDA)
	defer trainer.SetDefaultDevice(engine.CPU)
	objective := realTrainer.Objective()
	run := func(name string, c trainer.Config) {
		t.Helper()
		c.RunDir = filepath.Join(t.TempDir(), name)
		if _, err := objective(context.Background(), Run{Dir: c.RunDir, Config: c}); err != nil {
			t.Fatalf("trial %s: %v", name, err)
		}
	}
	// A first trial, so that what a process makes once (the data set's
	// caches) is made before the baseline; Trainer.Release returns the rest,
	// the engine's op scratch included.
	run("warm", c)
	base := cuda.Memory().InUse
	for i, opt := range []string{"sgd", "adamw"} {
		c.Optimizer, c.Hidden = opt, 16*(i+1)
		run(opt, c)
		if got := cuda.Memory().InUse; got != base {
			t.Errorf("after trial %d (%s): %d bytes in use, %d before", i, opt, got, base)
		}
	}
}
