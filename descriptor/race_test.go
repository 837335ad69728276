//go:build race

package descriptor

// The race detector slows code 5–10×; the fuzz time bound scales with it so
// that hack/test's -race run fails on a slow input, not on instrumentation.
const raceSlowdown = 10
