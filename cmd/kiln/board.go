package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

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
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("board takes no arguments (got %q): the log directory is --logdir", args)}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if st, err := os.Stat(logdir); err != nil || !st.IsDir() {
				return usageError{fmt.Errorf("--logdir %s: no such directory", logdir)}
			}
			if _, _, err := net.SplitHostPort(addr); err != nil {
				return usageError{fmt.Errorf("--addr %q: want host:port, as in 127.0.0.1:6006", addr)}
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
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
