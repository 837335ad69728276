package safetensors

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// file assembles a safetensors file from a raw header and data.
func file(header string, data []byte) []byte {
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	out = append(out, header...)
	return append(out, data...)
}

func read(b []byte) (*Header, error) { return ReadHeader(bytes.NewReader(b), int64(len(b))) }

func TestRoundTrip(t *testing.T) {
	inputs := []Input{
		{Name: "b.f16", DType: "F16", Shape: []int64{2, 3}, Data: bytes.NewReader(bytes.Repeat([]byte{1}, 12))},
		{Name: "a.i64", DType: "I64", Shape: []int64{2}, Data: bytes.NewReader(bytes.Repeat([]byte{2}, 16))},
		{Name: "c.bf16", DType: "BF16", Shape: []int64{1, 1, 1}, Data: bytes.NewReader([]byte{3, 4})},
		{Name: "d.f32", DType: "F32", Shape: nil, Data: bytes.NewReader([]byte{5, 6, 7, 8})},
		{Name: "e.empty", DType: "F32", Shape: []int64{0, 4}, Data: bytes.NewReader(nil)},
		{Name: "f.f4", DType: "F4", Shape: []int64{4}, Data: bytes.NewReader([]byte{9, 10})},
	}
	meta := map[string]string{"format": "pt", "note": "<&>"}
	var buf bytes.Buffer
	ts, err := Write(&buf, meta, inputs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if (8+len(buf.Bytes())-int(ts[len(ts)-1].End)-8)%8 != 0 {
		t.Fatalf("header not padded to 8 bytes")
	}
	// Widest dtype first, then by name.
	var order []string
	for _, x := range ts {
		order = append(order, x.Name)
	}
	if got := strings.Join(order, ","); got != "a.i64,d.f32,e.empty,b.f16,c.bf16,f.f4" {
		t.Fatalf("layout order %s", got)
	}
	h, err := read(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if h.Metadata["format"] != "pt" || h.Metadata["note"] != "<&>" || len(h.Metadata) != 2 {
		t.Fatalf("metadata %v", h.Metadata)
	}
	if h.DataStart%8 != 0 {
		t.Fatalf("data starts at %d, not 8-aligned", h.DataStart)
	}
	for _, in := range inputs {
		x, ok := h.Lookup(in.Name)
		if !ok {
			t.Fatalf("%s missing", in.Name)
		}
		if x.DType != in.DType || len(x.Shape) != len(in.Shape) {
			t.Fatalf("%s: %s %v", in.Name, x.DType, x.Shape)
		}
		for i := range x.Shape {
			if x.Shape[i] != in.Shape[i] {
				t.Fatalf("%s: shape %v want %v", in.Name, x.Shape, in.Shape)
			}
		}
	}
	got := buf.Bytes()[h.DataStart:]
	x, _ := h.Lookup("c.bf16")
	if !bytes.Equal(got[x.Begin:x.End], []byte{3, 4}) {
		t.Fatalf("c.bf16 bytes %v", got[x.Begin:x.End])
	}
	// Determinism: the same inputs give the same bytes.
	for i := range inputs {
		inputs[i].Data.(*bytes.Reader).Seek(0, 0)
	}
	var again bytes.Buffer
	if _, err := Write(&again, meta, inputs, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), buf.Bytes()) {
		t.Fatal("two writes of the same tensors differ")
	}
}

func TestWriteShortSource(t *testing.T) {
	_, err := Write(&bytes.Buffer{}, nil, []Input{{Name: "x", DType: "F32", Shape: []int64{4}, Data: bytes.NewReader(make([]byte, 10))}}, nil)
	if err == nil || !strings.Contains(err.Error(), `tensor "x": got 10 bytes of 16`) {
		t.Fatalf("err = %v", err)
	}
}

func TestReadErrors(t *testing.T) {
	ok := `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}}`
	huge := binary.LittleEndian.AppendUint64(nil, MaxHeaderSize+1)
	past := binary.LittleEndian.AppendUint64(nil, 1000)
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"empty file", nil, "too short for the 8-byte header length"},
		{"huge header", append(huge, "{}"...), "over the 100000000 byte limit"},
		{"header past end", append(past, "{}"...), "header length 1000 runs past the end of the file (2 bytes follow"},
		{"not json", file("hello", nil), "header is not JSON"},
		{"array", file("[]", nil), "not a JSON object"},
		{"trailing", file(`{}x`, nil), "data after its JSON object"},
		{"truncated data", file(ok, make([]byte, 10)), `tensor "b": data_offsets [8, 12] run past the end of the data section (10 bytes; truncated file?)`},
		{"extra data", file(ok, make([]byte, 14)), `data section holds 14 bytes, but the last tensor, "b", ends at 12: 2 bytes after it`},
		{"overlap", file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[4],"data_offsets":[6,10]}}`, make([]byte, 10)), `tensor "b": data_offsets [6, 10] overlap those of tensor "a", which end at 8`},
		{"gap", file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[4],"data_offsets":[9,13]}}`, make([]byte, 13)), `tensor "b": data begins at 9, leaving a gap after tensor "a", which ends at 8`},
		{"leading gap", file(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}`, make([]byte, 4)), `tensor "a": data begins at 2, leaving bytes 0 to 2`},
		{"unknown dtype", file(`{"a":{"dtype":"F7","shape":[2],"data_offsets":[0,2]}}`, make([]byte, 2)), `tensor "a": unknown dtype "F7" (known: BF16, BOOL`},
		{"size mismatch", file(`{"a":{"dtype":"F16","shape":[2,3],"data_offsets":[0,8]}}`, make([]byte, 8)), `tensor "a": data_offsets [0, 8] hold 8 bytes, but F16 [2 3] needs 12`},
		{"negative dim", file(`{"a":{"dtype":"F16","shape":[-2],"data_offsets":[0,0]}}`, nil), `tensor "a": shape has -2`},
		{"float offset", file(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2.5]}}`, make([]byte, 2)), `tensor "a": data_offsets has 2.5`},
		{"three offsets", file(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2,4]}}`, make([]byte, 2)), `data_offsets has 3 numbers`},
		{"inverted", file(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[2,0]}}`, make([]byte, 2)), `end before they begin`},
		{"overflow shape", file(`{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`, nil), `too many`},
		{"no dtype", file(`{"a":{"shape":[2],"data_offsets":[0,2]}}`, make([]byte, 2)), `tensor "a": no dtype`},
		{"entry not object", file(`{"a":5}`, nil), `tensor "a": entry must be an object`},
		{"dup", file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, make([]byte, 2)), `tensor "a" is in the header twice`},
		{"metadata not strings", file(`{"__metadata__":{"x":1}}`, nil), `__metadata__: value of "x" is not a string`},
		{"sub-byte", file(`{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,1]}}`, make([]byte, 1)), `12 bits, not whole bytes`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := read(c.file)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, c.want)
			}
		})
	}
	if _, err := read(file(ok+"    ", make([]byte, 12))); err != nil {
		t.Fatalf("valid padded file: %v", err)
	}
}

func TestOpenNamesTheFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.safetensors")
	os.WriteFile(p, file(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}`, []byte{1, 2}), 0o644)
	_, err := Open(p)
	if err == nil || !strings.HasPrefix(err.Error(), p+`: tensor "a"`) {
		t.Fatalf("err = %v", err)
	}
}

// readFromRecorder is a destination with a ReaderFrom, like *os.File.
type readFromRecorder struct {
	bytes.Buffer
	readFrom bool
	writes   []int
}

func (r *readFromRecorder) ReadFrom(src io.Reader) (int64, error) {
	r.readFrom = true
	return r.Buffer.ReadFrom(src)
}

func (r *readFromRecorder) Write(p []byte) (int, error) {
	r.writes = append(r.writes, len(p))
	return r.Buffer.Write(p)
}

// Tensor bytes go through the caller's buffer, whatever the destination:
// *os.File's ReadFrom would copy in 32 KiB steps instead.
func TestWriteUsesTheBuffer(t *testing.T) {
	var dst readFromRecorder
	size := int64(3 << 20)
	_, err := Write(&dst, nil, []Input{{Name: "x", DType: "U8", Shape: []int64{size}, Data: io.LimitReader(zeros{}, size)}}, make([]byte, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if dst.readFrom {
		t.Fatal("Write copied through the destination's ReadFrom, not the buffer")
	}
	if n := len(dst.writes); n != 1+3 { // the header, then 1 MiB steps
		t.Fatalf("%d writes %v, want the header and 3 writes of 1 MiB", n, dst.writes)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
