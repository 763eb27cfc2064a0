//go:build !unix

package userfiletest

import "errors"

func mkfifo(string) error { return errors.New("FIFOs are a Unix thing") }
