//go:build !cgo || !amd64

package engine

func cpuBF16() bool { return false }

func toBF16C(dst []BF16, src []float32) bool { return false }

func fromBF16C(dst []float32, src []BF16) bool { return false }
