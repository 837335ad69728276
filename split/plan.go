// Package split turns a safetensors checkpoint into a 2DFS field whose rows
// are pipeline stages: Plan decides which tensor goes to which cell (pure),
// Read opens a checkpoint, and Write streams the cells' files and writes the
// descriptor.
package split

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/tdfs-kit/tdfs/field"
)

// TensorSize is what planning needs to know of a tensor.
type TensorSize struct {
	Name string
	Size int64
}

// Options shape the plan.
type Options struct {
	// Stages is the number of pipeline stages; 0 means one per layer.
	Stages int
	// Cols splits each stage into this many parts; 0 means 1.
	Cols int
}

// Plan assigns every tensor to one cell: row = stage, col = part.
type Plan struct {
	Stages []Stage
}

// Stage is one row of the field.
type Stage struct {
	// FirstLayer and LastLayer are the layer indices the stage holds.
	FirstLayer, LastLayer int
	// Parts lists, per column, the names of the tensors in it, sorted.
	// A part may be empty when the stage has fewer tensors than columns;
	// part 0 never is.
	Parts [][]string
	// PartBytes is the size of each part's tensors.
	PartBytes []int64
}

// Bytes is the size of the stage's tensors.
func (s Stage) Bytes() int64 {
	var n int64
	for _, b := range s.PartBytes {
		n += b
	}
	return n
}

// layerPattern finds the layer index of a tensor in a stack of blocks:
// "model.layers.3.", "transformer.h.3.", "encoder.layer.3.", "blocks.3.".
// The text before the index names the stack.
var layerPattern = regexp.MustCompile(`(?:^|\.)(?:layers|layer|h|blocks|block)\.(\d+)\.`)

// LayerNames says, for messages and docs, which names have a layer index.
const LayerNames = "model.layers.N., h.N., layers.N., layer.N., blocks.N., block.N."

type role int

const (
	roleLayer role = iota
	roleFirst      // embeddings: with the first stage
	roleLast       // final norm and head: with the last stage
)

// classify returns the tensor's role, and for a layer tensor its stack and
// index.
func classify(name string) (role, string, int, error) {
	if m := layerPattern.FindStringSubmatchIndex(name); m != nil {
		n, err := strconv.Atoi(name[m[2]:m[3]])
		if err != nil || n > 1<<30 {
			return 0, "", 0, fmt.Errorf("tensor %q: layer index %s is too large", name, name[m[2]:m[3]])
		}
		return roleLayer, name[:m[2]-1], n, nil
	}
	parts := strings.Split(name, ".")
	for _, p := range parts {
		if strings.Contains(p, "embed") || p == "wte" || p == "wpe" {
			return roleFirst, "", 0, nil
		}
	}
	for _, p := range parts {
		if strings.Contains(p, "norm") || slices.Contains([]string{"ln_f", "lm_head", "head", "output", "score", "classifier"}, p) {
			return roleLast, "", 0, nil
		}
	}
	return 0, "", 0, fmt.Errorf("tensor %q has no layer index (%s) and is neither an embedding (a name part containing \"embed\", or wte, wpe) nor the head or final norm (a part containing \"norm\", or ln_f, lm_head, head, output, score, classifier); split cannot place it in a stage", name, LayerNames)
}

// MakePlan assigns tensors to cells. Layers are grouped into opt.Stages
// contiguous stages of about equal bytes (the least sum of squared stage
// sizes), embeddings counting with the first stage and the head and final
// norm with the last; each stage's tensors are then dealt into opt.Cols
// parts of about equal bytes, largest first into the smallest part. The
// same tensors (in any order) give the same plan.
func MakePlan(tensors []TensorSize, opt Options) (*Plan, error) {
	cols := max(opt.Cols, 1)
	if opt.Stages < 0 || opt.Cols < 0 {
		return nil, fmt.Errorf("stages and cols must not be negative")
	}
	if cols > field.MaxCoordinate+1 {
		return nil, fmt.Errorf("--cols %d is more than the field's %d columns", cols, field.MaxCoordinate+1)
	}
	type placed struct {
		TensorSize
		role  role
		layer int
	}
	var all []placed
	stackOf, stackTensor := "", ""
	layerBytes := map[int]int64{}
	seen := map[string]bool{}
	for _, t := range tensors {
		if seen[t.Name] {
			return nil, fmt.Errorf("tensor %q is in the checkpoint twice", t.Name)
		}
		seen[t.Name] = true
		r, stack, layer, err := classify(t.Name)
		if err != nil {
			return nil, err
		}
		if r == roleLayer {
			if stackTensor == "" {
				stackOf, stackTensor = stack, t.Name
			} else if stack != stackOf {
				a, b := stackTensor, t.Name
				if b < a {
					a, b = b, a
				}
				return nil, fmt.Errorf("tensors %q and %q belong to two stacks of layers (%q and %q); split places one stack in stages", a, b, stackOf, stack)
			}
			layerBytes[layer] += t.Size
		}
		all = append(all, placed{t, r, layer})
	}
	if len(layerBytes) == 0 {
		return nil, fmt.Errorf("no tensor has a layer index (%s); there is nothing to split into stages", LayerNames)
	}
	layers := make([]int, 0, len(layerBytes))
	for l := range layerBytes {
		layers = append(layers, l)
	}
	slices.Sort(layers)
	stages := opt.Stages
	if stages == 0 {
		stages = len(layers)
	}
	if stages > len(layers) {
		return nil, fmt.Errorf("--stages %d is more than the %d layers of the checkpoint", stages, len(layers))
	}
	if stages > field.MaxCoordinate {
		return nil, fmt.Errorf("%d stages and a row for the other files need %d rows, more than the field's %d; pass --stages", stages, stages+1, field.MaxCoordinate+1)
	}

	weights := make([]int64, len(layers))
	for i, l := range layers {
		weights[i] = layerBytes[l]
	}
	for _, t := range all {
		switch t.role {
		case roleFirst:
			weights[0] += t.Size
		case roleLast:
			weights[len(weights)-1] += t.Size
		}
	}
	cuts := balance(weights, stages) // stage s holds layers[cuts[s]:cuts[s+1]]
	stageOfLayer := map[int]int{}
	plan := &Plan{Stages: make([]Stage, stages)}
	for s := range stages {
		plan.Stages[s].FirstLayer = layers[cuts[s]]
		plan.Stages[s].LastLayer = layers[cuts[s+1]-1]
		for _, l := range layers[cuts[s]:cuts[s+1]] {
			stageOfLayer[l] = s
		}
	}
	members := make([][]TensorSize, stages)
	for _, t := range all {
		s := 0
		switch t.role {
		case roleLayer:
			s = stageOfLayer[t.layer]
		case roleLast:
			s = stages - 1
		}
		members[s] = append(members[s], t.TensorSize)
	}
	for s, ts := range members {
		plan.Stages[s].Parts, plan.Stages[s].PartBytes = deal(ts, cols)
	}
	return plan, nil
}

// balance cuts weights into n contiguous non-empty runs minimising the sum
// of squared run totals, and returns the n+1 cut points. Ties go to the
// earliest cut, so the result is deterministic.
func balance(weights []int64, n int) []int {
	L := len(weights)
	if n == L {
		cuts := make([]int, L+1)
		for i := range cuts {
			cuts[i] = i
		}
		return cuts
	}
	prefix := make([]float64, L+1)
	for i, w := range weights {
		prefix[i+1] = prefix[i] + float64(w)
	}
	sq := func(i, j int) float64 { d := prefix[j] - prefix[i]; return d * d }
	// cost[k][j]: best cost of the first j weights in k runs; from[k][j]: where the last run starts.
	cost := make([][]float64, n+1)
	from := make([][]int, n+1)
	for k := range cost {
		cost[k] = make([]float64, L+1)
		from[k] = make([]int, L+1)
	}
	for j := 1; j <= L; j++ {
		cost[1][j] = sq(0, j)
	}
	for k := 2; k <= n; k++ {
		for j := k; j <= L-(n-k); j++ {
			best, at := -1.0, 0
			for i := k - 1; i < j; i++ {
				if c := cost[k-1][i] + sq(i, j); best < 0 || c < best {
					best, at = c, i
				}
			}
			cost[k][j], from[k][j] = best, at
		}
	}
	cuts := make([]int, n+1)
	cuts[n] = L
	for k := n; k > 1; k-- {
		cuts[k-1] = from[k][cuts[k]]
	}
	return cuts
}

// deal puts tensors into cols parts, each largest-first into the part with
// the fewest bytes (the lowest column on ties), and sorts each part by name.
func deal(ts []TensorSize, cols int) ([][]string, []int64) {
	ts = slices.Clone(ts)
	slices.SortFunc(ts, func(a, b TensorSize) int {
		return cmp.Or(cmp.Compare(b.Size, a.Size), strings.Compare(a.Name, b.Name))
	})
	parts := make([][]string, cols)
	bytes := make([]int64, cols)
	for _, t := range ts {
		c := 0
		for i := 1; i < cols; i++ {
			if bytes[i] < bytes[c] || (bytes[i] == bytes[c] && len(parts[i]) < len(parts[c])) {
				c = i
			}
		}
		parts[c] = append(parts[c], t.Name)
		bytes[c] += t.Size
	}
	for _, p := range parts {
		slices.Sort(p)
	}
	return parts, bytes
}

// Tag is the partition tag suffix a worker of stage s pulls: the stage's
// row across its columns, and the row of the other files when there is one
// ("--1.0.1.3--4.0.4.0").
func (p *Plan) Tag(s int, cols int, otherFiles bool) string {
	rects := []field.Rect{{Top: s, Left: 0, Bottom: s, Right: max(cols, 1) - 1}}
	if otherFiles {
		n := len(p.Stages)
		rects = append(rects, field.Rect{Top: n, Left: 0, Bottom: n, Right: 0})
	}
	sel, err := field.NewSelection(rects...)
	if err != nil {
		panic(err) // MakePlan bounds stages and cols
	}
	return field.SelectionSeparator + sel.String()
}
