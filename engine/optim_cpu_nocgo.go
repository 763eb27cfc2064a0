//go:build !cgo || !amd64

package engine

func sgdStepC[T Float](w, g, buf []T, c SGDConfig) bool         { return false }
func adamWStepC[T Float](w, g, m, v []T, k adamWConsts[T]) bool { return false }
