package mpi

import (
	"fmt"
	"os"
	"strconv"
)

// Launch is what a launcher told this process through its environment,
// readable before Init: the trainer needs the local rank to pick a GPU and
// the world size to refuse a build without MPI.
type Launch struct {
	Size      int    // processes in the job
	Rank      int    // this process's rank, -1 when the launcher did not say
	LocalRank int    // rank among the processes on this machine, -1 when unknown
	Source    string // the variable the size came from, for messages
}

// launchers lists the variables of the launchers Kiln meets, most specific
// first: Open MPI's mpirun, MVAPICH, Hydra (MPICH, Intel MPI, Slurm's pmi2).
// Slurm's srun is handled apart (slurmLaunch).
var launchers = []struct{ size, rank, local string }{
	{"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK"},
	{"MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_LOCAL_RANK"},
	{"PMI_SIZE", "PMI_RANK", "MPI_LOCALRANKID"},
}

// Launched reports whether a launcher started this process, and as what.
// Outside mpirun or srun it is false and no MPI needs to be touched.
func Launched() (Launch, bool) {
	for _, l := range launchers {
		if size, ok := envInt(l.size); ok && size > 0 {
			return Launch{Size: size, Rank: envIntOr(l.rank, -1),
				LocalRank: envIntOr(l.local, -1), Source: l.size}, true
		}
	}
	return slurmLaunch()
}

// slurmLaunch reads an srun job step. A batch script itself also sees
// SLURM_NTASKS (the allocation's, not its own), so only a real step counts:
// SLURM_STEP_ID numbers steps from 0, and the batch and extern steps carry
// ids near 2^32.
func slurmLaunch() (Launch, bool) {
	step, ok := envInt("SLURM_STEP_ID")
	if !ok || step < 0 || step >= 0xFFFFFF00 {
		return Launch{}, false
	}
	size, ok := envInt("SLURM_STEP_NUM_TASKS")
	if !ok || size <= 0 {
		return Launch{}, false
	}
	return Launch{Size: size, Rank: envIntOr("SLURM_PROCID", -1),
		LocalRank: envIntOr("SLURM_LOCALID", -1), Source: "SLURM_STEP_NUM_TASKS"}, true
}

// NotBuiltMessage is what a build without MPI says when started as one of
// several ranks.
const NotBuiltMessage = "this kiln was built without MPI; build with `make build MPI=1`"

// errNotBuilt is the error of a build without MPI started as one of several
// processes; nil when it was not.
func errNotBuilt() error {
	l, ok := Launched()
	if !ok || l.Size <= 1 {
		return nil
	}
	return fmt.Errorf("%s (started as one of %d processes: %s=%d)", NotBuiltMessage, l.Size, l.Source, l.Size)
}

func envInt(name string) (int, bool) {
	s, ok := os.LookupEnv(name)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

func envIntOr(name string, fallback int) int {
	if n, ok := envInt(name); ok {
		return n
	}
	return fallback
}

func checkRoot(root, size int) error {
	if root < 0 || root >= size {
		return fmt.Errorf("mpi: root %d outside a world of %d", root, size)
	}
	return nil
}
