//go:build !cgo || !amd64

package engine

func activationC[T Float](dst, a, x, y []T, kind Activation, backward bool) bool { return false }

func geluDerivC[T Float](dst, a, y []T, backward bool) bool { return false }
