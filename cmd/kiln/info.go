package main

import (
	"fmt"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
)

func infoCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "info",
		Short: "Show the build, the devices found and where ops run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Printf("build:   CPU (no cuda tag), %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
			fmt.Printf("cpu:     %d threads for ops\n", engine.Threads())
			fmt.Printf("cuda:    not in this build\n")
			fmt.Printf("ops run: cpu\n")
			fmt.Printf("models:  %s\n", strings.Join(layers.ModelNames(), ", "))
			return nil
		},
	}
}
