// Command kiln trains, measures and inspects Kiln models.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/trainer"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
)

// stopSignals end a command as Ctrl-C does (a training saves its
// checkpoint first): Ctrl-C, a scheduler's or mpirun's SIGTERM, and the
// SIGHUP of a dropped SSH session, which killed a run without one, unless
// the process was started ignoring it (nohup): asking for a signal
// undoes its being ignored.
var stopSignals = func() []os.Signal {
	sigs := []os.Signal{os.Interrupt, syscall.SIGTERM}
	if !signal.Ignored(syscall.SIGHUP) {
		sigs = append(sigs, syscall.SIGHUP)
	}
	return sigs
}()

// stopContext is signal.NotifyContext for stopSignals and SIGPIPE, for the
// commands that train. A console piped to a reader that has gone (tee,
// killed by the same Ctrl-C, or head) raises SIGPIPE at the next log line,
// which killed the run before its checkpoint: it now stops the run as
// SIGHUP does, checkpoint first. A second signal (other than SIGPIPE,
// which each later line raises again, or a repeat of the first within
// sameStop) ends the process at once, as a kill would, which every file
// Kiln writes survives: a stuck checkpoint or a long test pass no longer
// needs kill -9. status is the exit status for a command the first signal
// stopped: 128 + its number (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP, 141
// SIGPIPE).
func stopContext() (ctx context.Context, stop func(), status func() int) {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, append(stopSignals, syscall.SIGPIPE)...)
	ctx, cancel := context.WithCancel(context.Background())
	var first atomic.Value
	var firstAt time.Time
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-ch:
				if first.CompareAndSwap(nil, s) {
					firstAt = time.Now()
					cancel()
				} else if s != syscall.SIGPIPE && (s != first.Load() || time.Since(firstAt) > sameStop) {
					fmt.Fprintf(os.Stderr, "kiln: %v again: stopped at once, as a kill stops it (--resume continues from the last checkpoint)\n", s)
					os.Exit(signalStatus(s))
				}
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { signal.Stop(ch); close(done); cancel() }) }
	status = func() int {
		if s, ok := first.Load().(os.Signal); ok {
			return signalStatus(s)
		}
		return 130
	}
	return ctx, stop, status
}

// sameStop is how soon a repeat of the first signal is the same stop, not
// a second one: GNU timeout sends SIGTERM to the process and then to its
// group, and a scheduler's cancel reaches a rank from itself and through
// mpirun.
const sameStop = 500 * time.Millisecond

// signalStatus is the shell's exit status for a process that s ended.
func signalStatus(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return 128 + int(n)
	}
	return 130
}

// usageError marks mistakes in flags or arguments: exit status 2, as flag
// parsing errors have.
type usageError struct{ error }

// noArgs refuses positional arguments, saying which flag takes what was
// most likely meant: cobra's own message, `unknown command "cnn" for "kiln
// train"`, reads as if a subcommand were missing.
func noArgs(hint string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		err := fmt.Errorf("%s takes no arguments (got %q)", cmd.CommandPath(), args)
		if b := boolFlagValue(cmd, args[0]); b != "" {
			hint = b // --nesterov false: a bool flag takes its value after =
		}
		if hint != "" {
			err = fmt.Errorf("%w: %s", err, hint)
		}
		return usageError{err}
	}
}

// boolFlagValue is the hint for a stray "true" or "false" written after a
// bool flag (--nesterov false), which the flag does not take as its value:
// "--nesterov=false". "" otherwise.
func boolFlagValue(cmd *cobra.Command, arg string) string {
	if _, err := strconv.ParseBool(arg); err != nil {
		return ""
	}
	raw := os.Args[1:]
	for i := 1; i < len(raw); i++ {
		name, isFlag := strings.CutPrefix(raw[i-1], "--")
		if !isFlag || raw[i] != arg || strings.Contains(name, "=") {
			continue
		}
		if fl := cmd.Flags().Lookup(name); fl != nil && fl.Value.Type() == "bool" {
			return fmt.Sprintf("a true/false flag takes its value after =: --%s=%s", name, arg)
		}
	}
	return ""
}

func main() {
	root := &cobra.Command{
		Use:           "kiln",
		Short:         "Kiln: a deep-learning training engine in Go",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		for _, err := range []error{engine.CPUISAEnvError(), engine.CPUAMXEnvError(), engine.ConvWinogradEnvError()} {
			if err != nil {
				return usageError{err}
			}
		}
		return oneProcess(cmd, args)
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(trainCmd(), evalCmd(), predictCmd(), exportCmd(), benchCmd(), infoCmd(), boardCmd())
	root.AddCommand(plotCmd(), summaryCmd())
	root.AddCommand(tuneCmd(), lrFindCmd())
	err := root.Execute()
	if err == nil {
		err = stdout.Err()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kiln:", err)
		os.Exit(exitCode(err))
	}
}

// exitCode is the exit status of err: 2 for a usage error, an exitError's
// own, 1 otherwise.
func exitCode(err error) int {
	var u usageError
	var x exitError
	switch {
	case errors.As(err, &u), strings.HasPrefix(err.Error(), "unknown command "): // cobra's, for a mistyped command
		return 2
	case errors.As(err, &x):
		return x.code
	}
	return 1
}

// logger is the console's (trainer.ConsoleWriter).
func logger() zerolog.Logger {
	return zerolog.New(trainer.ConsoleWriter(os.Stderr)).Level(consoleLevel).With().Timestamp().Logger()
}
