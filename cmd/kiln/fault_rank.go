//go:build faultinject

package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// KILN_FAULT=panicrank:R panics rank R (not 0) at the start of its
// training, as a bug would: the job must end, not hang.
func init() {
	spec, ok := strings.CutPrefix(os.Getenv("KILN_FAULT"), "panicrank:")
	if !ok {
		return
	}
	r, _ := strconv.Atoi(spec)
	rankFault = func(rank int) {
		if rank == r {
			panic(fmt.Sprintf("KILN_FAULT=panicrank:%d", r))
		}
	}
}
