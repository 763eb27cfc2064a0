//go:build cgo && amd64

package engine

// #include "isa_cpu.h"
import "C"

func isaSupported() int { return int(C.kiln_isa_supported()) }

func setISA(l int) int { return int(C.kiln_set_isa(C.int(l))) }

func cpuZMMSplit() bool { return C.kiln_cpu_zmm_split() != 0 }
