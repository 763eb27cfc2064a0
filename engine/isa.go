package engine

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
)

// The instruction-set level of the C fast paths: generic (x86-64 baseline,
// and every other architecture, which runs the Go loops), avx2 (AVX2 and
// FMA) or avx512 (AVX-512 F/BW/VL/DQ). The CPU is asked once; the level in
// use is the highest it runs unless KILN_CPU_ISA or SetCPUISA lowers it,
// and every fast path reads it at each call. Results are deterministic run
// to run at one level; two levels may differ in the last bits.

// ISA levels, lowest first.
var isaNames = []string{"generic", "avx2", "avx512"}

const (
	isaGeneric = iota
	isaAVX2
	isaAVX512
)

// isaLevel mirrors the C side's level in use, for the Go checks.
var isaLevel atomic.Int32

// isaEnvErr is why $KILN_CPU_ISA was not applied, if it was not.
var isaEnvErr error

func init() {
	isaLevel.Store(int32(setISA(isaSupported())))
	if v := os.Getenv("KILN_CPU_ISA"); v != "" {
		if err := SetCPUISA(v); err != nil {
			isaEnvErr = fmt.Errorf("$KILN_CPU_ISA: %w", err)
		}
	}
}

// CPUISA is the level in use.
func CPUISA() string { return isaNames[isaLevel.Load()] }

// CPUISAs are the levels this CPU runs, lowest first.
func CPUISAs() []string { return slices.Clone(isaNames[:isaSupported()+1]) }

// CPUISAEnvError is why $KILN_CPU_ISA was refused (an unknown name, or a
// level this CPU lacks), nil when it was applied or not set.
func CPUISAEnvError() error { return isaEnvErr }

// SetCPUISA sets the level in use: one of CPUISAs().
func SetCPUISA(name string) error {
	want := slices.Index(isaNames, strings.ToLower(strings.TrimSpace(name)))
	if want < 0 {
		return fmt.Errorf("%q: want %s", name, strings.Join(isaNames, ", "))
	}
	if want > isaSupported() {
		return fmt.Errorf("%s: this CPU runs %s at most", isaNames[want], isaNames[isaSupported()])
	}
	isaLevel.Store(int32(setISA(want)))
	return nil
}

// atISA reports whether the level in use is at least l.
func atISA(l int) bool { return int(isaLevel.Load()) >= l }
