// Package onnxtest runs ONNX files for tests: in ONNX Runtime, the npm
// package onnxruntime-node under Node (../testdata/run.js), and through
// ONNX's own checker, Python's onnx package (../testdata/check.py).
//
// The runtime is looked for in $KILN_ONNXRUNTIME_DIR, else
// ~/.cache/kiln/onnxruntime-node, installed there by
//
//	npm install --prefix DIR --no-audit --no-fund --ignore-scripts onnxruntime-node
//
// (--ignore-scripts: the install script fetches GPU extras and fails; the
// package holds the CPU runtime without it). Where Node or the package is
// missing the tests that need it skip, saying so, unless
// REQUIRE_ONNXRUNTIME=1, which makes that a failure (CI installs both).
package onnxtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// RuntimeDir is where onnxruntime-node is installed (node_modules under it).
func RuntimeDir() string {
	if d := os.Getenv("KILN_ONNXRUNTIME_DIR"); d != "" {
		return d
	}
	if c, err := os.UserCacheDir(); err == nil {
		return filepath.Join(c, "kiln", "onnxruntime-node")
	}
	return filepath.Join(os.TempDir(), "kiln-onnxruntime-node")
}

// Runtime runs models in ONNX Runtime under Node.
type Runtime struct {
	node, modules string
}

// FindRuntime returns the runtime, or skips t saying what is missing (fails
// it under REQUIRE_ONNXRUNTIME=1).
func FindRuntime(t testing.TB) *Runtime {
	t.Helper()
	r, err := findRuntime()
	if err != nil {
		msg := fmt.Sprintf("ONNX Runtime not available: %v (install: apt-get install nodejs npm; "+
			"npm install --prefix %s --no-audit --no-fund --ignore-scripts onnxruntime-node)", err, RuntimeDir())
		if os.Getenv("REQUIRE_ONNXRUNTIME") == "1" {
			t.Fatal(msg + "; REQUIRE_ONNXRUNTIME=1 makes this a failure")
		}
		t.Skip(msg)
	}
	return r
}

func findRuntime() (*Runtime, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, errors.New("no node on PATH")
	}
	modules := filepath.Join(RuntimeDir(), "node_modules")
	if _, err := os.Stat(filepath.Join(modules, "onnxruntime-node", "package.json")); err != nil {
		return nil, fmt.Errorf("no onnxruntime-node in %s", modules)
	}
	return &Runtime{node: node, modules: modules}, nil
}

// Tensor is a float32 tensor with its dimensions.
type Tensor struct {
	Dims []int     `json:"dims"`
	Data []float32 `json:"data"`
}

// Case is one model run on some inputs, each in a session.Run of its own.
type Case struct {
	Name   string   `json:"name"`
	Model  string   `json:"model"`  // an .onnx file
	Input  string   `json:"input"`  // the graph input fed
	Output string   `json:"output"` // the graph output read
	Inputs []Tensor `json:"inputs"`
}

// Result is a case's outputs, one per input, or the error that stopped it.
type Result struct {
	Name        string   `json:"name"`
	Error       string   `json:"error"`
	InputNames  []string `json:"inputNames"`
	OutputNames []string `json:"outputNames"`
	Outputs     []Tensor `json:"outputs"`
}

// Run runs every case in one Node process and returns ONNX Runtime's version
// and the results by case name.
func (r *Runtime) Run(t testing.TB, cases []Case) (string, map[string]Result) {
	t.Helper()
	dir := t.TempDir()
	manifest, err := json.Marshal(map[string]any{"cases": cases})
	if err != nil {
		t.Fatal(err)
	}
	in, out := filepath.Join(dir, "manifest.json"), filepath.Join(dir, "results.json")
	if err := os.WriteFile(in, manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.node, script("run.js"), in, out)
	cmd.Env = append(os.Environ(), "NODE_PATH="+r.modules)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node run.js: %v\n%s", err, stderr.Bytes())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Version string   `json:"version"`
		Results []Result `json:"results"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("run.js results: %v", err)
	}
	byName := map[string]Result{}
	for _, x := range res.Results {
		byName[x.Name] = x
	}
	return res.Version, byName
}

// Check runs ONNX's checker (with shape inference) on the files and fails t
// for each one it rejects. Without a python3 that imports onnx it checks
// nothing, logs why, and returns false.
func Check(t testing.TB, files ...string) bool {
	t.Helper()
	py := checkerPython()
	if py == "" {
		t.Log("ONNX checker skipped: no python3 with the onnx package (apt-get install python3-onnx)")
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, append([]string{script("check.py")}, files...)...).CombinedOutput()
	if err != nil {
		t.Errorf("ONNX checker (%s): %v\n%s", py, err, out)
	} else {
		t.Logf("ONNX checker (%s, full check) accepts all %d files", py, len(files))
	}
	return true
}

// checkerPython is a python3 that imports onnx: the one on PATH, else
// Debian's (a PATH python, e.g. pyenv's, may lack the Debian package).
func checkerPython() string {
	var cands []string
	if p, err := exec.LookPath("python3"); err == nil {
		cands = append(cands, p)
	}
	cands = append(cands, "/usr/bin/python3")
	for _, p := range cands {
		if exec.Command(p, "-c", "import onnx.checker").Run() == nil {
			return p
		}
	}
	return ""
}

// script is the path of a file of ../testdata, found from this source file.
func script(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata", name)
}
