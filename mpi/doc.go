// Package mpi is Kiln's binding to MPI, the collectives that CPU
// data-parallel training needs and nothing else: who this process is (rank,
// world size, rank and count on this machine), in-place sum all-reduce of
// float32 and float64 buffers, broadcast, all-gather of bytes, a check that
// every rank holds the same bytes (Agree), a barrier, and abort.
//
// Why MPI: it launches and wires the processes (mpirun, Slurm's srun, the
// Kubeflow MPI runtime on Kubernetes) and already all-reduces on CPUs, so
// Kiln writes no launcher, no wire protocol and no collective of its own.
// This package adds no reduction algorithm either: it calls MPI_Allreduce
// and pins the algorithm Open MPI picks (see Init) so sums are reproducible.
// GPU tensors will be reduced by NCCL, in a package of its own.
//
// Builds: with the build tag mpi (cgo, Open MPI's `ompi-c` pkg-config
// module; Debian: openmpi-bin libopenmpi-dev) this is the real binding.
// Without it the package is plain Go and its World is one process, so the
// default build needs neither MPI nor cgo; Init then refuses to run only
// when a launcher clearly started several processes, so that a build
// without MPI never trains N independent copies by accident.
//
// Launched reads the launcher's environment without touching MPI: outside
// mpirun or srun a program need not call Init at all, and a GPU build picks
// its device from the local rank before it does.
//
// Every rank must make the same collective calls in the same order with
// buffers of the same length; MPI errors come back as Go errors, and a
// rank that dies makes mpirun end the others.
package mpi
