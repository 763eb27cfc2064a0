package main

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/rs/zerolog"

	"github.com/kiln-ml/kiln/trainer"
)

// consoleLevel is the least level the console shows (--log-level; debug
// lines are hidden by default). A run's train.log keeps every level.
var consoleLevel = zerolog.InfoLevel

// consoleAt sets the console's least level from a --log-level value
// (validated with the config: "" is info) and returns standard error
// filtered to it, for RunDir.Logger's console; logger() follows it too.
func consoleAt(level string) io.Writer {
	consoleLevel = zerolog.InfoLevel
	switch level {
	case "debug":
		consoleLevel = zerolog.DebugLevel
	case "warn":
		consoleLevel = zerolog.WarnLevel
	}
	return levelFilter{out: os.Stderr, min: consoleLevel}
}

// levelFilter passes on the lines of a zerolog.ConsoleWriter at min or
// above. RunDir.Logger tees each event to train.log and to a ConsoleWriter
// around the console it is given, so what reaches the console is text: one
// Write an event, beginning with the time and the level's short name (DBG,
// INF, … as zerolog.FormattedLevels has them), perhaps coloured. A line
// whose level it cannot read is shown.
type levelFilter struct {
	out io.Writer
	min zerolog.Level
}

func (f levelFilter) Write(p []byte) (int, error) {
	if lineLevel(p) < f.min {
		return len(p), nil
	}
	return f.out.Write(p)
}

// lineLevel reads the level of a console line: its second word once colour
// escapes are taken out; zerolog.NoLevel when there is none.
func lineLevel(p []byte) zerolog.Level {
	head := p[:min(len(p), 64)]
	var plain []byte
	for i := 0; i < len(head); i++ {
		if head[i] == 0x1b { // ESC [ … m
			for i < len(head) && head[i] != 'm' {
				i++
			}
			continue
		}
		plain = append(plain, head[i])
	}
	words := bytes.Fields(plain)
	if len(words) < 2 {
		return zerolog.NoLevel
	}
	for l, name := range zerolog.FormattedLevels {
		if string(words[1]) == name {
			return l
		}
	}
	return zerolog.NoLevel
}

// withSummary prints the model's layer table on the console, at the top of
// kiln train when the console shows info lines, and puts it in model.json.
// A model it cannot summarise trains all the same, said in one line.
func withSummary(m trainer.ModelInfo) trainer.ModelInfo {
	s, err := modelSummary(m.Model, m.Spec)
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
