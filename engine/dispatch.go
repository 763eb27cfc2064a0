package engine

import "unsafe"

// The dtype dispatch of every op, one pattern: an entry point checks its
// tensors, then runs its CPU body, one generic function over the element
// type T, with the argument list written once and the instantiation picked
// from the dtype:
//
//	pick(dt, runActivation[float32], runActivation[float64])(out, x, nil, nil, kind, false)
//
// The body takes the tensors and reads their data with dataAs[T]; where it
// works on slices, its tensor parameter xT becomes the slice x := dataAs[T](xT).
//
// An instantiated generic function is a static function value, so the pick
// allocates nothing; but the call through it is indirect (a few ns), and
// escape analysis then moves whatever its arguments point to onto the heap:
// tensors and the callers' index slices live there already; pass small structs
// by value, never the address of a local. TestCPUDispatchAllocatesNothing
// holds every entry point to that.
func pick[F any](dt DType, f32, f64 F) F {
	if dt == Float64 {
		return f64
	}
	return f32
}

// dataAs returns a tensor's CPU data as []T (nil for a nil tensor, an
// optional argument); the caller has checked that T matches the dtype.
func dataAs[T Float](t *Tensor) []T {
	if t == nil {
		return nil
	}
	if isFloat64[T]() {
		return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(t.f64))), len(t.f64))
	}
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(t.f32))), len(t.f32))
}

// dtypeIndex is 0 for float32 and 1 for float64: it picks a kernel's taskPool
// of task structs.
func dtypeIndex[T Float]() int {
	if isFloat64[T]() {
		return 1
	}
	return 0
}
