//go:build !cgo || !amd64

package engine

func addC[T Float](out, a, b []T) bool { return false }

func scaleC[T Float](x []T, s T) bool { return false }

func addRowBiasC[T Float](out, b []T, n, o int) bool { return false }

func sumRowsC[T Float](db, dout []T, n, o int) bool { return false }
