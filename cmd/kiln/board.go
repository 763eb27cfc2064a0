package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/kiln-ml/kiln/board"
)

func boardCmd() *cobra.Command {
	var logdir, addr string
	cmd := &cobra.Command{
		Use:   "board",
		Short: "Serve a local web page of the runs under a log directory, live while they train",
		Long: `Serve a local web page of the runs under --logdir (any directory holding
metrics.jsonl, tune trials included): scalar curves with smoothing, weight and
gradient histograms, first-layer filters, attention maps, sample predictions,
the confusion matrix and tune results. The page updates while runs train.
It listens on 127.0.0.1 unless --addr says otherwise, and works offline.`,
		Args: noArgs("the log directory is --logdir"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := dirFlag("--logdir", logdir); err != nil {
				return err
			}
			if err := addrFlag(addr); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), stopSignals...)
			defer stop()
			out := cmd.OutOrStdout()
			return board.Serve(ctx, board.Options{
				Logdir: logdir,
				Addr:   addr,
				Log:    logger(),
				Ready:  func(url string) { fmt.Fprintf(out, "kiln board: %s (Ctrl-C to stop)\n", url) },
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&logdir, "logdir", "runs", "directory holding the run directories")
	f.StringVar(&addr, "addr", "127.0.0.1:6006", "address to listen on (host:port; port 0 picks a free one)")
	return cmd
}

// dirFlag checks a flag that names an existing directory, and says what is
// wrong when it does not: missing, a file, or the system's own error.
func dirFlag(flag, dir string) error {
	if dir == "" {
		return usageError{fmt.Errorf("%s is empty: it names a directory", flag)}
	}
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return usageError{fmt.Errorf("%s %s: no such directory", flag, dir)}
	case err != nil:
		return usageError{fmt.Errorf("%s %s: %w", flag, dir, err)}
	case !st.IsDir():
		return usageError{fmt.Errorf("%s %s: is a file, not a directory", flag, dir)}
	}
	return nil
}

// addrFlag checks --addr before listening, so that a mistyped port is a
// usage error rather than a failure to listen.
func addrFlag(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return usageError{fmt.Errorf("--addr %q: want host:port, as in 127.0.0.1:6006", addr)}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return usageError{fmt.Errorf("--addr %q: the port is a number from 0 to 65535 (0 picks a free one)", addr)}
	}
	return nil
}
