//go:build !cgo || !amd64

package engine

func broadcastMulC[T Float](p *broadcastPlan, out, x, g []T) bool { return false }

func broadcastMulBackwardC[T Float](p *broadcastPlan, dx, dg, dout, x, g []T) bool { return false }
