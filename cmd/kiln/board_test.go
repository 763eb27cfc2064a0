package main

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// kiln board against a run that kiln train wrote: it prints its URL, serves
// the run, refuses a path out of the log directory and stops on Ctrl-C.
func TestBoardServesRunsUntilInterrupted(t *testing.T) {
	run := tinyRun(t)
	logdir := filepath.Dir(run)
	cmd := exec.Command(kilnBin, "board", "--logdir", logdir, "--addr", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
		io.Copy(io.Discard, stdout)
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(20 * time.Second):
		t.Fatalf("kiln board printed no URL; stderr:\n%s", stderr.String())
	}
	fields := strings.Fields(line)
	if len(fields) < 3 || fields[0] != "kiln" || !strings.HasPrefix(fields[2], "http://127.0.0.1:") {
		t.Fatalf("first line %q", line)
	}
	base := fields[2]
	get := func(p string) (int, string) {
		res, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	name := filepath.Base(run)
	if code, body := get("api/runs"); code != 200 || !strings.Contains(body, `"id":"`+name+`"`) {
		t.Fatalf("api/runs: %d %s", code, body)
	}
	if code, body := get("api/file?path=" + url.QueryEscape(name+"/metrics.jsonl")); code != 200 || !strings.Contains(body, `"split":"val"`) {
		t.Fatalf("metrics.jsonl: %d %s", code, body)
	}
	if code, _ := get("api/file?path=" + url.QueryEscape("../"+filepath.Base(logdir)+"/"+name+"/metrics.jsonl")); code != http.StatusForbidden {
		t.Fatalf("a path out of the log directory: %d", code)
	}
	if code, body := get(""); code != 200 || !strings.Contains(body, "Kiln board") {
		t.Fatalf("page: %d", code)
	}
	cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("kiln board after Ctrl-C: %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("kiln board did not stop on Ctrl-C")
	}
}

func TestBoardUsageErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "metrics.jsonl")
	if err := os.WriteFile(file, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"board", "--logdir", filepath.Join(dir, "nope")}, "no such directory"},
		{[]string{"board", "--logdir", file}, "is a file, not a directory"},
		{[]string{"board", "--logdir", ""}, "--logdir"},
		{[]string{"board", "--logdir", dir, "--addr", "127.0.0.1:http6006"}, "--addr"},
		{[]string{"board", "--logdir", dir, "--addr", "127.0.0.1:70000"}, "--addr"},
		{[]string{"board", "--logdir", dir, "--addr", "6006"}, "--addr"},
		{[]string{"board", "--logdir", dir, "extra"}, "no arguments"},
	} {
		r := kiln(t, dir, c.args...)
		if r.code != 2 || !strings.Contains(strings.Join(errorLines(r.stderr), "\n"), c.want) {
			t.Errorf("kiln %s: exit %d, stderr %q", strings.Join(c.args, " "), r.code, r.stderr)
		}
	}
}
