//go:build !cgo || !amd64

package engine

// Without cgo on x86-64 every op runs its Go loop: the generic level.
func isaSupported() int { return isaGeneric }

func setISA(int) int { return isaGeneric }

func cpuZMMSplit() bool { return false }
