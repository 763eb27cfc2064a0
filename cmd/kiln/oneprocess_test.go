package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Every command but train and bench (timing data-parallel steps) refuses to
// run as one of several processes a launcher started: each would run its
// own copy over the same files.
func TestOneProcessCommandsRefuseALauncher(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		args []string
	}{
		{"lr-find", []string{"lr-find", "--model", "mlp"}},
		{"tune", []string{"tune"}},
		{"eval", []string{"eval", "--run", "r"}},
		{"bench suite", []string{"bench", "suite", "--quick", "--no-torch"}},
	} {
		args := c.args
		cmd := exec.Command(kilnBin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "OMPI_COMM_WORLD_SIZE=2", "OMPI_COMM_WORLD_RANK=0")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		want := c.name + " runs as one process"
		if code != 2 || !strings.Contains(stderr.String(), want) || !strings.Contains(stderr.String(), "one of 2") {
			t.Errorf("kiln %s under a launcher of 2: exit %d, stderr %q; want exit 2 and %q", strings.Join(args, " "), code, stderr.String(), want)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("a refused command wrote %d entries in its directory", len(entries))
	}
}
