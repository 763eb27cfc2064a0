package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/rs/zerolog"

	"github.com/kiln-ml/kiln/trainer"
)

// consoleLevel is the least level the console shows (--log-level; debug
// lines are hidden by default). A run's train.log keeps every level.
var consoleLevel = zerolog.InfoLevel

// setConsoleLevel sets the console's least level from a --log-level value
// (validated with the config: "" is info) and returns it, for
// RunDir.LoggerAt; logger() follows it too.
func setConsoleLevel(level string) zerolog.Level {
	consoleLevel = zerolog.InfoLevel
	switch strings.ToLower(level) {
	case "debug":
		consoleLevel = zerolog.DebugLevel
	case "warn":
		consoleLevel = zerolog.WarnLevel
	}
	return consoleLevel
}

// withSummary prints the model's layer table on the console, at the top of
// kiln train when the console shows info lines, and puts it in model.json.
// A model it cannot summarise trains all the same, said in one line.
func withSummary(m trainer.ModelInfo) trainer.ModelInfo {
	s, err := modelSummary(trainer.Config{Model: m.Model, Optimizer: "sgd", Hidden: m.Spec.Hidden, Depth: m.Spec.Depth}, m.Spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, "no model summary:", err)
		return m
	}
	m.Summary = s
	if consoleLevel <= zerolog.InfoLevel {
		_ = writeSummary(os.Stderr, s)
	}
	return m
}
