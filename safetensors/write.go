package safetensors

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Input is a tensor to write: its header entry and a reader of exactly its
// bytes.
type Input struct {
	Name  string
	DType DType
	Shape []int64
	Data  io.Reader
}

// Layout orders tensors as the reference writer does, by element width
// (widest first) then name, so that with the header padded to 8 bytes every
// tensor of a width up to 8 bytes starts aligned to it; and assigns their
// offsets. It checks names, dtypes and shapes.
func Layout(inputs []Input) ([]Tensor, error) {
	ts := make([]Tensor, 0, len(inputs))
	seen := map[string]bool{}
	for _, in := range inputs {
		if in.Name == MetadataKey || in.Name == "" {
			return nil, fmt.Errorf("tensor name %q is not allowed", in.Name)
		}
		if seen[in.Name] {
			return nil, fmt.Errorf("tensor %q given twice", in.Name)
		}
		seen[in.Name] = true
		size, err := ByteSize(in.DType, in.Shape)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", in.Name, err)
		}
		shape := slices.Clone(in.Shape)
		if shape == nil {
			shape = []int64{}
		}
		ts = append(ts, Tensor{Name: in.Name, DType: in.DType, Shape: shape, End: size})
	}
	slices.SortFunc(ts, func(a, b Tensor) int {
		return cmp.Or(cmp.Compare(b.DType.Bits(), a.DType.Bits()), strings.Compare(a.Name, b.Name))
	})
	var off int64
	for i := range ts {
		size := ts[i].End
		ts[i].Begin, ts[i].End = off, off+size
		off += size
	}
	return ts, nil
}

// EncodeHeader returns the file's first bytes: the 8-byte length and the
// JSON header, keys sorted, padded with spaces to a multiple of 8 bytes.
// The same tensors and metadata always give the same bytes.
func EncodeHeader(metadata map[string]string, tensors []Tensor) ([]byte, error) {
	type entry struct {
		DType       DType    `json:"dtype"`
		Shape       []int64  `json:"shape"`
		DataOffsets [2]int64 `json:"data_offsets"`
	}
	m := make(map[string]any, len(tensors)+1)
	if len(metadata) > 0 {
		m[MetadataKey] = metadata
	}
	for _, t := range tensors {
		m[t.Name] = entry{DType: t.DType, Shape: t.Shape, DataOffsets: [2]int64{t.Begin, t.End}}
	}
	var js bytes.Buffer
	enc := json.NewEncoder(&js)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil { // map keys are sorted
		return nil, err
	}
	body := bytes.TrimRight(js.Bytes(), "\n")
	if len(body) > MaxHeaderSize {
		return nil, fmt.Errorf("header would be %d bytes, over the %d byte limit", len(body), MaxHeaderSize)
	}
	n := (len(body) + 7) / 8 * 8
	out := make([]byte, 8, 8+n)
	binary.LittleEndian.PutUint64(out, uint64(n))
	out = append(out, body...)
	for len(out) < 8+n {
		out = append(out, ' ')
	}
	return out, nil
}

// Write writes a safetensors file holding inputs to w, copying each
// tensor's bytes through buf (32 KiB when nil), and returns the tensors as
// laid out. Each Data must yield exactly the tensor's size.
func Write(w io.Writer, metadata map[string]string, inputs []Input, buf []byte) ([]Tensor, error) {
	ts, err := Layout(inputs)
	if err != nil {
		return nil, err
	}
	head, err := EncodeHeader(metadata, ts)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(head); err != nil {
		return nil, err
	}
	if buf == nil {
		buf = make([]byte, 32<<10)
	}
	// Hide w's ReaderFrom: *os.File's would copy through its own 32 KiB
	// buffer (it can use copy_file_range only from a plain *os.File).
	dst := struct{ io.Writer }{w}
	byName := make(map[string]io.Reader, len(inputs))
	for _, in := range inputs {
		byName[in.Name] = in.Data
	}
	for _, t := range ts {
		n, err := io.CopyBuffer(dst, io.LimitReader(byName[t.Name], t.Size()), buf)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		if n != t.Size() {
			return nil, fmt.Errorf("tensor %q: got %d bytes of %d (source truncated?)", t.Name, n, t.Size())
		}
	}
	return ts, nil
}
