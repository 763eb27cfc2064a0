//go:build cgo

package engine

// The C fast paths (*.c) compile on every cgo build, as Go compiles every C
// file of a package that uses cgo; on architectures other than amd64 they
// compile to nothing (their x86 guard), and a package of C files needs one Go
// file that imports "C" there too: this one.

import "C"
