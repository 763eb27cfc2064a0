package main

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// stdout is standard output for what a command prints as its result (the
// predictions, the JSON, the test figures): every command writes them
// through it, and main fails the command when a write failed, so that
// `kiln predict --json > preds.jsonl` on a full disk does not end in
// success with the file short.
var stdout = &checkedWriter{w: os.Stdout}

// checkedWriter remembers the first error of its writes.
type checkedWriter struct {
	mu  sync.Mutex
	w   io.Writer
	err error
}

func (c *checkedWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.w.Write(p)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

// Err is the first write error, naming standard output.
func (c *checkedWriter) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		return nil
	}
	return fmt.Errorf("writing the results to standard output: %w", c.err)
}

func outf(format string, a ...any) { fmt.Fprintf(stdout, format, a...) }
func outln(a ...any)               { fmt.Fprintln(stdout, a...) }
