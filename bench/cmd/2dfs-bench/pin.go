package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// -pin-registry models a registry on a host of its own with the cores of
// this one: the registry gets half of them and everything on the building
// side (the benchmark process, so the floor's uploads and every command it
// starts, among them the 2dfs direct engine; buildkitd and containerd) the
// other half. Unpinned, the builder and the registry take turns on the same
// cores, so a build's wall time follows the sum of both sides' CPU time;
// pinned, a build that overlaps its own work with the registry's is bound
// by the larger of the two, as it would be across two hosts.
type pinning struct {
	registry, builder []int // CPUs
}

func (p pinning) String() string {
	return fmt.Sprintf("registry on CPU %s, builder side on CPU %s", cpuList(p.registry), cpuList(p.builder))
}

func cpuList(cpus []int) string {
	var s []string
	for _, c := range cpus {
		s = append(s, strconv.Itoa(c))
	}
	return strings.Join(s, ",")
}

// splitCPUs gives the registry the first half of the CPUs this process may
// run on (at least one) and the builder the rest.
func splitCPUs(allowed []int) (pinning, error) {
	if len(allowed) < 2 {
		return pinning{}, fmt.Errorf("-pin-registry needs at least 2 CPUs, this process may run on %d", len(allowed))
	}
	n := len(allowed) / 2
	return pinning{registry: slices.Clone(allowed[:n]), builder: slices.Clone(allowed[n:])}, nil
}

func allowedCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	var out []int
	for c := range 1024 {
		if set.IsSet(c) {
			out = append(out, c)
		}
	}
	return out, nil
}

// pinProcess sets the affinity of every thread of PID (threads it makes
// later inherit it from the thread that makes them). It goes over the
// threads twice, for any made while the first pass ran.
func pinProcess(pid int, cpus []int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	for range 2 {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			// A thread that exited in between is no error.
			if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
				return fmt.Errorf("sched_setaffinity of thread %d of process %d: %w", tid, pid, err)
			}
		}
	}
	return nil
}

// pinDaemons pins the registry hack/daemons started (DIR/registry.pid)
// and every other daemon it started under DIR, and this process, as p
// says. It runs after the benchmark started its buildkitds.
func pinDaemons(dir string, p pinning) error {
	pids, err := filepath.Glob(filepath.Join(dir, "*.pid"))
	if err != nil {
		return err
	}
	foundRegistry := false
	for _, f := range pids {
		dt, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(dt)))
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		cpus := p.builder
		if filepath.Base(f) == "registry.pid" {
			cpus, foundRegistry = p.registry, true
		}
		if err := pinProcess(pid, cpus); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	if !foundRegistry {
		return fmt.Errorf("-pin-registry: no registry.pid in %s (was the registry started by hack/daemons up?)", dir)
	}
	return pinProcess(os.Getpid(), p.builder)
}
