package split

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// llama makes the tensors of a small llama-like model: n layers of 4
// tensors of layerSize bytes each (one is a norm), embeddings and head.
func llama(n int, layerSize int64) []TensorSize {
	ts := []TensorSize{{"model.embed_tokens.weight", 1000}, {"model.norm.weight", 10}, {"lm_head.weight", 1000}}
	for l := range n {
		for _, p := range []string{"self_attn.q_proj.weight", "self_attn.k_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight"} {
			ts = append(ts, TensorSize{fmt.Sprintf("model.layers.%d.%s", l, p), layerSize})
		}
	}
	return ts
}

func stageOf(p *Plan) map[string][2]int {
	out := map[string][2]int{}
	for s, st := range p.Stages {
		for c, part := range st.Parts {
			for _, n := range part {
				out[n] = [2]int{s, c}
			}
		}
	}
	return out
}

func TestDefaultOneStagePerLayer(t *testing.T) {
	p, err := MakePlan(llama(3, 100), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Stages) != 3 {
		t.Fatalf("%d stages, want 3", len(p.Stages))
	}
	at := stageOf(p)
	for name, want := range map[string]int{
		"model.embed_tokens.weight": 0, "model.layers.0.mlp.down_proj.weight": 0,
		"model.layers.1.self_attn.q_proj.weight": 1, "model.layers.2.input_layernorm.weight": 2,
		"model.norm.weight": 2, "lm_head.weight": 2,
	} {
		if at[name][0] != want {
			t.Errorf("%s in stage %d, want %d", name, at[name][0], want)
		}
	}
	if len(at) != 3*4+3 {
		t.Fatalf("%d tensors placed, want %d", len(at), 15)
	}
	if p.Stages[1].FirstLayer != 1 || p.Stages[1].LastLayer != 1 {
		t.Fatalf("stage 1 holds layers %d-%d", p.Stages[1].FirstLayer, p.Stages[1].LastLayer)
	}
}

func TestStagesBalanceBytes(t *testing.T) {
	// 8 layers of 400 bytes; embeddings 1000 and head 1010 weigh on the
	// ends, so the end stages get fewer layers.
	p, err := MakePlan(llama(8, 100), Options{Stages: 4})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range p.Stages {
		got = append(got, fmt.Sprintf("%d-%d:%d", s.FirstLayer, s.LastLayer, s.Bytes()))
	}
	want := "0-0:1400 1-3:1200 4-6:1200 7-7:1410"
	if strings.Join(got, " ") != want {
		t.Fatalf("stages %s, want %s", strings.Join(got, " "), want)
	}
	// Equal layers with no ends: equal stages.
	var ts []TensorSize
	for l := range 12 {
		ts = append(ts, TensorSize{fmt.Sprintf("h.%d.w", l), 7})
	}
	p, err = MakePlan(ts, Options{Stages: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range p.Stages {
		if s.Bytes() != 28 || s.FirstLayer != 4*i {
			t.Fatalf("stage %d: layers %d-%d, %d bytes", i, s.FirstLayer, s.LastLayer, s.Bytes())
		}
	}
}

func TestColsBalanceAndDeterminism(t *testing.T) {
	ts := llama(4, 0)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range ts {
		ts[i].Size = 1 + r.Int64N(1000)
	}
	p, err := MakePlan(ts, Options{Stages: 2, Cols: 3})
	if err != nil {
		t.Fatal(err)
	}
	for s, st := range p.Stages {
		if len(st.Parts) != 3 {
			t.Fatalf("stage %d has %d parts", s, len(st.Parts))
		}
		lo, hi := st.PartBytes[0], st.PartBytes[0]
		var biggest int64
		for c, part := range st.Parts {
			lo, hi = min(lo, st.PartBytes[c]), max(hi, st.PartBytes[c])
			var sum int64
			for _, n := range part {
				for _, x := range ts {
					if x.Name == n {
						sum += x.Size
						biggest = max(biggest, x.Size)
					}
				}
			}
			if sum != st.PartBytes[c] {
				t.Fatalf("stage %d part %d: bytes %d, tensors sum to %d", s, c, st.PartBytes[c], sum)
			}
		}
		// Largest-first dealing keeps parts within one tensor of each other.
		if hi-lo > biggest {
			t.Fatalf("stage %d parts %v differ by more than the biggest tensor %d", s, st.PartBytes, biggest)
		}
	}
	// Any input order gives the same plan.
	shuffled := append([]TensorSize(nil), ts...)
	r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	q, err := MakePlan(shuffled, Options{Stages: 2, Cols: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, q) {
		t.Fatal("shuffled input gave another plan")
	}
}

func TestLayerNames(t *testing.T) {
	for name, want := range map[string][3]any{
		"model.layers.12.mlp.w":          {roleLayer, "model.layers", 12},
		"transformer.h.3.attn.c_attn.w":  {roleLayer, "transformer.h", 3},
		"layers.0.attention.wq.weight":   {roleLayer, "layers", 0},
		"blocks.7.norm1.weight":          {roleLayer, "blocks", 7},
		"encoder.layer.2.output.dense.b": {roleLayer, "encoder.layer", 2},
		"model.layers.1.experts.5.w1":    {roleLayer, "model.layers", 1},
		"transformer.wte.weight":         {roleFirst, "", 0},
		"tok_embeddings.weight":          {roleFirst, "", 0},
		"word_embeddings_layernorm.bias": {roleFirst, "", 0},
		"transformer.ln_f.weight":        {roleLast, "", 0},
		"output.weight":                  {roleLast, "", 0},
		"model.final_layernorm.weight":   {roleLast, "", 0},
		"lm_head.weight":                 {roleLast, "", 0},
	} {
		r, stack, n, err := classify(name)
		if err != nil || r != want[0] || stack != want[1] || n != want[2] {
			t.Errorf("%s: %v %q %d %v, want %v", name, r, stack, n, err, want)
		}
	}
}

func TestPlanErrors(t *testing.T) {
	for _, c := range []struct {
		ts   []TensorSize
		opt  Options
		want string
	}{
		{append(llama(2, 1), TensorSize{"model.rotary.inv_freq", 4}), Options{}, `tensor "model.rotary.inv_freq" has no layer index (model.layers.N.`},
		{[]TensorSize{{"encoder.block.0.w", 1}, {"decoder.block.0.w", 1}}, Options{}, `tensors "decoder.block.0.w" and "encoder.block.0.w" belong to two stacks of layers ("encoder.block" and "decoder.block")`},
		{llama(2, 1), Options{Stages: 3}, "--stages 3 is more than the 2 layers"},
		{[]TensorSize{{"wte", 1}, {"lm_head.weight", 1}}, Options{}, "no tensor has a layer index"},
		{llama(2, 1), Options{Cols: 2000}, "--cols 2000 is more than the field's 1024 columns"},
		{[]TensorSize{{"h.0.a", 1}, {"h.0.a", 1}}, Options{}, `tensor "h.0.a" is in the checkpoint twice`},
	} {
		_, err := MakePlan(c.ts, c.opt)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err = %v, want %q", err, c.want)
		}
	}
}

func TestTag(t *testing.T) {
	p, _ := MakePlan(llama(3, 1), Options{Cols: 4})
	if got := p.Tag(1, 4, true); got != "--1.0.1.3--3.0.3.0" {
		t.Fatalf("tag %s", got)
	}
	if got := p.Tag(0, 1, false); got != "--0.0.0.0" {
		t.Fatalf("tag %s", got)
	}
}

// FuzzMakePlan: any names and sizes either fail with an error or place every
// tensor exactly once, in contiguous stages of layers, part 0 never empty.
func FuzzMakePlan(f *testing.F) {
	f.Add("model.layers.0.a\nmodel.layers.1.b\nmodel.embed.w\nlm_head.w", uint64(12345), 2, 2)
	f.Add("h.3.x\nh.1.y\nh.1.z\nwte\nln_f.w", uint64(7), 0, 3)
	f.Add("blocks.0.a\nencoder.layer.0.b", uint64(1), 1, 1)
	f.Fuzz(func(t *testing.T, names string, seed uint64, stages, cols int) {
		if stages > 64 || cols > 64 {
			return
		}
		r := rand.New(rand.NewPCG(seed, 0))
		var ts []TensorSize
		for _, n := range strings.Split(names, "\n") {
			ts = append(ts, TensorSize{n, r.Int64N(1 << 40)})
		}
		p, err := MakePlan(ts, Options{Stages: stages, Cols: cols})
		if err != nil {
			return
		}
		at := stageOf(p)
		if len(at) != len(ts) {
			t.Fatalf("%d tensors placed of %d", len(at), len(ts))
		}
		prevLast := -1
		for s, st := range p.Stages {
			if len(st.Parts[0]) == 0 || st.FirstLayer <= prevLast || st.LastLayer < st.FirstLayer {
				t.Fatalf("stage %d: %+v after layer %d", s, st, prevLast)
			}
			prevLast = st.LastLayer
		}
		for _, x := range ts {
			if _, stack, layer, _ := classify(x.Name); stack != "" {
				st := p.Stages[at[x.Name][0]]
				if layer < st.FirstLayer || layer > st.LastLayer {
					t.Fatalf("%s (layer %d) in stage %+v", x.Name, layer, st)
				}
			}
		}
	})
}
