package trainer

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzLoadConfig feeds LoadConfigFile YAML and JSON. It must return (an
// error or a configuration) without panicking, and a configuration that
// validates must survive what a run does with it: written as config.yaml
// and read back (kiln train --resume, kiln eval --run), it is the same.
func FuzzLoadConfig(f *testing.F) {
	def := DefaultConfig()
	y, err := def.YAML()
	if err != nil {
		f.Fatal(err)
	}
	j, err := json.Marshal(def)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(y, false)
	f.Add(j, true)
	f.Add([]byte("model: mlp\ndataset: csv\ndata_dir: data/iris.csv\nclasses: [0, 2]\nhidden: 64\ndepth: 3\nepochs: 5\nbatch: 32\nlr: 3e-3\noptimizer: adamw\nweight_decay: 0.01\nschedule: cosine\nwarmup: 10\n"), false)
	f.Add([]byte("# a multistep run\nmodel: cnn\ndropout: 0.2\nschedule: multistep\nmilestones:\n  - 100\n  - 200\ngamma: 0.1\nearly_stop: val_acc\npatience: 3\ntarget: 0.99\nrestore_best: true\nval_every: 50\nseed: 18446744073709551615\n"), false)
	f.Add([]byte(`{"model": "gmlp", "dataset": "cifar10", "augment": true, "lr": 0.003, "optimizer": "adamw", "label_smoothing": 0.1, "clip_norm": 1, "classes": [1, 3, 5]}`), true)
	f.Add([]byte("epochs: .nan\nlr: .inf\nmin_delta: -.inf\n"), false)
	f.Add([]byte("model: [[[[[[[[[[]]]]]]]]]]\n"), false)
	f.Add([]byte("a: &x [1, 2]\nclasses: *x\n"), false)
	f.Add([]byte("epochs: 1.5\nseed: -1\nbatch: 99999999999999999999\n"), false)
	f.Fuzz(func(t *testing.T, content []byte, isJSON bool) {
		// Bytes, not files: a fuzz body that touches the disk is slow enough
		// that go test's fuzzing deadline fails it.
		if checkNesting(content, MaxConfigDepth, isJSON) != nil {
			return
		}
		c, err := ParseConfig(content, isJSON, DefaultConfig())
		if err != nil || c.Validate() != nil {
			return
		}
		y, err := c.YAML()
		if err != nil {
			t.Fatalf("a valid configuration does not render: %v", err)
		}
		back, err := ParseConfig(y, false, Config{})
		if err != nil {
			t.Fatalf("config.yaml of a valid configuration does not load: %v\n%s", err, y)
		}
		y2, err := back.YAML()
		if err != nil || !bytes.Equal(y, y2) {
			t.Fatalf("config.yaml changed on the way back (%v):\n%s\n---\n%s", err, y, y2)
		}
	})
}
