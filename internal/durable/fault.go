//go:build faultinject

package durable

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Fault injection, compiled only into test builds (-tags faultinject) and
// driven by KILN_FAULT:
//
//	count:FILE   append "N op path" to FILE for each mutation (N from 1)
//	kill:N       SIGKILL this process just before mutation N
//	int:N        SIGINT this process just before mutation N, which then
//	             waits for its handler (for commands that exit from it)
//	enospc:N     from mutation N on, fail every create and write with ENOSPC,
//	             as a disk that has filled up does
//	enospc1:N    fail mutation N alone (a create or write) with ENOSPC, as a
//	             nearly full disk fails a large write and takes small ones
//
// The fault-injection tests run a training once with count to learn how
// many mutations it makes, then once per mutation with kill or enospc.
func init() {
	spec := os.Getenv("KILN_FAULT")
	if spec == "" {
		return
	}
	mode, arg, _ := strings.Cut(spec, ":")
	var mu sync.Mutex
	n := 0
	at, _ := strconv.Atoi(arg)
	hook = func(op, path string) error {
		mu.Lock()
		defer mu.Unlock()
		n++
		switch mode {
		case "count":
			f, err := os.OpenFile(arg, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err == nil {
				fmt.Fprintf(f, "%d %s %s\n", n, op, path)
				f.Close()
			}
		case "kill", "int":
			if n == at {
				// Unlocked (the deferred unlock never runs): the signal's
				// handler may change files, through this hook, too.
				mu.Unlock()
				syscall.Kill(os.Getpid(), map[string]syscall.Signal{"kill": syscall.SIGKILL, "int": syscall.SIGINT}[mode])
				select {} // the signal is on its way
			}
		case "enospc", "enospc1":
			if (n == at || n > at && mode == "enospc") && (op == OpCreate || op == OpWrite) {
				return &os.PathError{Op: op, Path: path, Err: syscall.ENOSPC}
			}
		}
		return nil
	}
}
