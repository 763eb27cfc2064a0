//go:build !mpi

package main

import "errors"

func cvar(name string) (int64, error) { return 0, errors.New("built without MPI") }
