package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/trainer/tune"
)

// Running a tune once its trials are known: threads and devices shared out
// between parallel trials, Ctrl-C, and the results at the end.

// tuneParallelism caps parallel trials so that threads × parallel ≤ cores;
// each trial gets cores/parallel threads unless threads says otherwise.
func tuneParallelism(parallel, threads, cores int) (int, int) {
	p := max(1, min(parallel, cores))
	if threads > 0 {
		threads = min(threads, cores)
		return max(1, min(p, cores/threads)), threads
	}
	return p, max(1, cores/p)
}

func runTune(tu *tune.Tuner, parallel, threads int) error {
	console := logger()
	if err := selectDevice(tu.State.Base.Device, console); err != nil {
		return err
	}
	cores := runtime.NumCPU()
	p, t := tuneParallelism(parallel, threads, cores)
	if p < parallel {
		console.Warn().Int("asked", parallel).Int("parallel", p).Int("threads", t).Int("cores", cores).
			Msg("fewer trials at once, so that threads × parallel ≤ cores")
	}
	if dev, _, _ := engine.ParseDevice(tu.State.Base.Device); dev == engine.CUDA && p > 1 {
		// One GPU: trials take turns on it rather than split its memory.
		console.Warn().Int("asked", parallel).Msg("--device cuda: one trial at a time")
		p = 1
	}
	engine.SetThreads(t)
	tu.Parallel, tu.Threads, tu.Log = p, t, console
	if tu.State.Threads == 0 {
		tu.State.Threads = t // saved as the first trial starts
	}
	if tu.State.Parallel == 0 {
		tu.State.Parallel = p
	}
	tu.Objective = tune.NewTrainer().Objective()
	console.Info().Str("dir", tu.Dir).Int("threads_per_trial", t).Msg("tune")
	ctx, stop, status := stopContext()
	defer stop()
	st, err := tu.Run(ctx)
	if st != nil {
		outln()
		st.WriteTable(stdout)
	}
	if errors.Is(err, context.Canceled) {
		return exitError{fmt.Errorf("tune interrupted; kiln tune --run-dir %s --resume continues it", shellQuote(tu.Dir)), status()}
	}
	if tune.Environmental(err) {
		return fmt.Errorf("%w\nthe trials that ended are kept: mend the cause, then kiln tune --run-dir %s --resume (with --data-dir DIR for data found elsewhere)", err, shellQuote(tu.Dir))
	}
	if err != nil {
		return err
	}
	best := st.Best()
	outf("\nbest: trial %s  %s %.4g  → %s\nresults: %s\ntrain it: kiln train --config %s\n", best.Name(), st.Settings.Metric,
		*best.Metric, filepath.Join(tu.Dir, best.Dir), filepath.Join(tu.Dir, tune.ResultsFile), filepath.Join(tu.Dir, tune.BestFile))
	return nil
}
