package mpi

import (
	"errors"
	"strings"
	"testing"
)

// clearLaunchEnv hides the launcher variables of the environment the test
// runs in (an empty value reads as unset).
func clearLaunchEnv(t *testing.T) {
	for _, l := range launchers {
		t.Setenv(l.size, "")
		t.Setenv(l.rank, "")
		t.Setenv(l.local, "")
	}
	for _, v := range []string{"SLURM_STEP_ID", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS"} {
		t.Setenv(v, "")
	}
}

func TestLaunched(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want Launch
		ok   bool
	}{
		{"no launcher", nil, Launch{}, false},
		{"mpirun", map[string]string{"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_LOCAL_RANK": "1"},
			Launch{Size: 4, Rank: 3, LocalRank: 1, Source: "OMPI_COMM_WORLD_SIZE"}, true},
		{"hydra", map[string]string{"PMI_SIZE": "2", "PMI_RANK": "1"},
			Launch{Size: 2, Rank: 1, LocalRank: -1, Source: "PMI_SIZE"}, true},
		{"srun step", map[string]string{"SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NTASKS": "8"},
			Launch{Size: 8, Rank: 5, LocalRank: 1, Source: "SLURM_STEP_NUM_TASKS"}, true},
		{"sbatch script itself", map[string]string{"SLURM_STEP_ID": "4294967294", "SLURM_STEP_NUM_TASKS": "1", "SLURM_NTASKS": "8"}, Launch{}, false},
		{"allocation without step", map[string]string{"SLURM_NTASKS": "8", "SLURM_PROCID": "0"}, Launch{}, false},
		{"garbage", map[string]string{"OMPI_COMM_WORLD_SIZE": "two"}, Launch{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clearLaunchEnv(t)
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			got, ok := Launched()
			if ok != c.ok || got != c.want {
				t.Errorf("Launched() = %+v, %v; want %+v, %v", got, ok, c.want, c.ok)
			}
		})
	}
}

func TestErrNotBuiltOnlyForSeveralProcesses(t *testing.T) {
	clearLaunchEnv(t)
	if err := errNotBuilt(); err != nil {
		t.Errorf("outside any launcher: %v", err)
	}
	t.Setenv("OMPI_COMM_WORLD_SIZE", "1")
	if err := errNotBuilt(); err != nil {
		t.Errorf("mpirun -np 1: %v", err)
	}
	t.Setenv("OMPI_COMM_WORLD_SIZE", "2")
	err := errNotBuilt()
	if err == nil || !strings.Contains(err.Error(), NotBuiltMessage) || !strings.Contains(err.Error(), "OMPI_COMM_WORLD_SIZE=2") {
		t.Errorf("mpirun -np 2: %v, want %q naming the variable", err, NotBuiltMessage)
	}
}

func TestDisagreeErrorNamesRanks(t *testing.T) {
	err := error(&DisagreeError{What: "the configuration hash", Ranks: []int{1, 3},
		Values: [][]byte{{1, 2}, {9}, {1, 2}, {0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0xff, 0}}})
	want := "mpi: ranks disagree on the configuration hash: rank 0 has 0102, rank 1 has 09, " +
		"rank 3 has 3031323334353637… (10 bytes)"
	if err.Error() != want {
		t.Errorf("got  %s\nwant %s", err, want)
	}
	// A short text (a device's name) is shown as text.
	err = &DisagreeError{What: "the device", Ranks: []int{1}, Values: [][]byte{[]byte("cuda"), []byte("cpu")}}
	want = `mpi: ranks disagree on the device: rank 0 has "cuda", rank 1 has "cpu"`
	if err.Error() != want {
		t.Errorf("got  %s\nwant %s", err, want)
	}
	var d *DisagreeError
	if !errors.As(err, &d) {
		t.Error("errors.As does not find *DisagreeError")
	}
}
