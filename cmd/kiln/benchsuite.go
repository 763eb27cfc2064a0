package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kiln-ml/kiln/bench"
	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/trainer"
)

func benchSuiteCmd() *cobra.Command {
	var (
		cfg        bench.Config
		sections   string
		precisions string
	)
	cmd := &cobra.Command{
		Use:   "suite",
		Short: "Run the whole benchmark suite, side by side with PyTorch, and write the report",
		Long: `Runs the benchmark suite: op-level timings (convolution, pooling, SGU gating,
GEMM, batch norm, layer norm) against the machine's measured peaks, training
images/s and peak memory of every zoo model, time to accuracy (MNIST 99%,
Fashion-MNIST 90%, MNIST 0-vs-1 99.8%) and scaling with batch size and
threads. When a python3 with torch is found (Debian's python3-torch), the
same work runs in PyTorch in the same invocation, at its best thread
setting, alternating with Kiln's runs; ratios are Kiln's speed over
PyTorch's. With --precision fp32,bf16 the training section runs every model
in each precision (Kiln's --precision; PyTorch under torch.autocast for
bf16) and the tables gain a row per model and precision.

Writes <out>/<machine>-<isa>-<date>.json (no <isa> with --device cuda) and .md with PNG plots, and prints the
tables. The full suite takes about 20 minutes on 2 cores (under 10 without
PyTorch) and logs its progress; run it on a quiet machine. --quick is a smoke
test of a few seconds whose numbers mean nothing.`,
		Example: `  make bench                               # the full suite into bench/results
  kiln bench suite --quick --no-torch      # a smoke test
  kiln bench suite --sections ops,train    # some sections only
  kiln bench suite --sections train --precision fp32,bf16`,
		Args: noArgs("the sections are --sections"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Device != "cpu" && cfg.Device != "cuda" {
				return usageError{fmt.Errorf("--device %q: want cpu or cuda", cfg.Device)}
			}
			if cfg.Threads < 0 || cfg.Threads > trainer.MaxThreads {
				return usagef("--threads %d: must be in [0, %d] (0: all cores)", cfg.Threads, trainer.MaxThreads)
			}
			if cfg.Rounds < 0 {
				return usageError{fmt.Errorf("--rounds must not be negative")}
			}
			if err := bench.CheckName(cfg.Name); err != nil {
				return usageError{err}
			}
			if sections != "" {
				cfg.Sections = strings.Split(sections, ",")
				for _, s := range cfg.Sections {
					if !slices.Contains(bench.Sections, s) {
						return usageError{fmt.Errorf("--sections: unknown %q (have %s)", s, strings.Join(bench.Sections, ", "))}
					}
				}
			}
			var err error
			if cfg.Precisions, err = parsePrecisions(precisions, cfg.Device); err != nil {
				return usageError{fmt.Errorf("--precision: %w", err)}
			}
			cfg.Log = logger()
			cfg.Stdout = stdout
			if cfg.Device == "cuda" {
				// The op timings and time to accuracy run in this process:
				// the plain build hands the whole suite over to kiln-cuda.
				// Where the GPU cannot open, the suite still runs and every
				// Kiln measurement on it says why.
				if _, err := resolveDevice("cuda", cfg.Log); err != nil {
					cfg.Log.Warn().Err(err).Msg("Kiln's side of the suite has no GPU")
				}
			}
			// SIGTERM (timeout, a CI cancel) writes the partial report as Ctrl-C does.
			ctx, stop, status := stopContext() // a second Ctrl-C ends the suite at once
			defer stop()
			rep, err := bench.Run(ctx, cfg)
			if err != nil {
				if rep != nil && len(rep.Files) > 0 {
					fmt.Fprintf(os.Stderr, "kiln: the suite stopped; what it measured is in %s\n", strings.Join(rep.FilePaths(cfg.Out), ", "))
				}
				if ctx.Err() != nil {
					return exitError{errors.New("bench suite interrupted"), status()}
				}
				return err
			}
			outf("\nwrote %s\n", strings.Join(rep.FilePaths(cfg.Out), ", "))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Device, "device", "cpu", "cpu or cuda (passed to kiln bench and to PyTorch)")
	f.StringVar(&cfg.Out, "out", "bench/results", "folder for the JSON, the markdown report and the plots")
	f.BoolVar(&cfg.Quick, "quick", false, "a smoke test: tiny shapes, short timings, one round (seconds)")
	f.BoolVar(&cfg.NoTorch, "no-torch", false, "do not run PyTorch: Kiln's figures alone")
	f.StringVar(&cfg.Python, "python", "", "python3 with torch (default /usr/bin/python3, then python3 on PATH)")
	f.StringVar(&cfg.Name, "name", "", "machine label for the file names (default: from the CPU model and cores)")
	f.IntVar(&cfg.Threads, "threads", 0, "Kiln's CPU threads (0: all cores)")
	f.IntVar(&cfg.Rounds, "rounds", 0, "alternating Kiln/PyTorch rounds (0: 3, or 1 with --quick)")
	f.StringVar(&sections, "sections", "", "comma-separated subset of "+strings.Join(bench.Sections, ","))
	f.StringVar(&precisions, "precision", "fp32", "the training section's precisions, comma-separated: fp32, tf32 (GPU), bf16")
	return cmd
}

// parsePrecisions reads a comma-separated --precision list, refusing a
// precision device ("cpu" or "cuda") cannot compute in.
func parsePrecisions(list, device string) ([]engine.Precision, error) {
	dev := engine.CPU
	if device == "cuda" {
		dev = engine.CUDA
	}
	var ps []engine.Precision
	for _, name := range strings.Split(list, ",") {
		p, err := parsePrecision(strings.TrimSpace(name), dev)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(ps, p) {
			ps = append(ps, p)
		}
	}
	return ps, nil
}
