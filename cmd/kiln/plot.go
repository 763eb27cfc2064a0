package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/plots"
)

func plotCmd() *cobra.Command {
	var run string
	cmd := &cobra.Command{
		Use:   "plot --run DIR",
		Short: "Draw a run's curves, filters, samples, confusion, attention and histograms as PNG files in DIR/plots",
		Long: `Draw a run directory's pictures as PNG files in DIR/plots/, for people without a browser:
loss.png, accuracy.png (rmse.png for regression), lr.png, filters.png, samples.png,
confusion.png, attention.png (CBAM models), sgu.png (gMLP models) and histograms.png.
It can run while the run is still training; pictures it has no data for yet are skipped.`,
		Args: noArgs("the run directory is --run"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if run == "" {
				return usageError{errors.New("--run DIR is required (a run directory, e.g. runs/lenet-…)")}
			}
			if err := dirFlag("--run", run); err != nil {
				return err
			}
			rep, err := plots.WriteRun(run)
			if err != nil {
				return err
			}
			fmt.Fprint(stdout, rep.String())
			if n := len(rep.Failed); n > 0 {
				return fmt.Errorf("%d of the pictures could not be written to %s (see \"failed\" above)", n, filepath.Join(run, trainer.PlotsDir))
			}
			if len(rep.Written) == 0 {
				return fmt.Errorf("no picture written for %s", run)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&run, "run", "", "run directory to draw")
	return cmd
}
