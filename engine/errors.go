package engine

import (
	"errors"
	"fmt"
	"strings"
)

// ShapeError reports tensors whose shapes, dtypes or devices do not fit an op.
type ShapeError struct {
	Op     string   // the op that refused, e.g. "Conv2DForward"
	Msg    string   // what is wrong
	Shapes []string // each argument as name=(shape)
}

func (e *ShapeError) Error() string {
	return fmt.Sprintf("%s: %s [%s]", e.Op, e.Msg, strings.Join(e.Shapes, " "))
}

// ErrNoKernel is wrapped by errors for ops whose tensors live on a device that
// has no kernel for them.
var ErrNoKernel = errors.New("no kernel for this device")

// shapeErr builds a ShapeError; args alternate name, *Tensor.
func shapeErr(op, msg string, args ...any) error {
	e := &ShapeError{Op: op, Msg: msg}
	for i := 0; i+1 < len(args); i += 2 {
		name, _ := args[i].(string)
		switch v := args[i+1].(type) {
		case *Tensor:
			e.Shapes = append(e.Shapes, name+"="+v.describe())
		default:
			e.Shapes = append(e.Shapes, fmt.Sprintf("%s=%v", name, v))
		}
	}
	return e
}

func (t *Tensor) describe() string {
	if t == nil {
		return "nil"
	}
	return fmt.Sprintf("%v%s", t.shape, dtypeSuffix(t.dtype))
}

func dtypeSuffix(d DType) string {
	if d == Float32 {
		return ""
	}
	return ":" + d.String()
}
