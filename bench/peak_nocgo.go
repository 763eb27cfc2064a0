//go:build !cgo

package bench

func fmaLoop(int64) float64 { return 0 }

func fmaKind() string { return "" }

// Without cgo there is no way to issue vector FMAs from Go alone.
const haveFMALoop = false
