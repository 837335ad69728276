//go:build !race

package descriptor

const raceSlowdown = 1
