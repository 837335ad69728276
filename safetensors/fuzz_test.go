package safetensors

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"
)

// FuzzReadHeader feeds arbitrary files to the header reader: it must never
// panic, and whatever it accepts must tile the data section and survive a
// re-encode unchanged. Seeds live in testdata/fuzz/FuzzReadHeader as well.
func FuzzReadHeader(f *testing.F) {
	f.Add(file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Add(file(`{"__metadata__":{"format":"pt"},"w":{"dtype":"BF16","shape":[1,2],"data_offsets":[0,4]},"e":{"dtype":"I64","shape":[0],"data_offsets":[4,4]}}`, make([]byte, 4)))
	f.Add(file(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}`, make([]byte, 6)))
	f.Add(file(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[1,5]}}`, make([]byte, 5)))
	f.Add(file(`{"a":{"dtype":"X9","shape":[4],"data_offsets":[0,4]}}`, make([]byte, 4)))
	f.Add(file(`{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}`, make([]byte, 2)))
	f.Add(append(binary.LittleEndian.AppendUint64(nil, 1<<62), '{', '}'))
	f.Add([]byte{2, 0, 0, 0, 0, 0, 0, 0, '{', '}'})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := read(data)
		if err != nil {
			if h != nil {
				t.Fatal("header and error both returned")
			}
			return
		}
		dataSize := int64(len(data)) - h.DataStart
		if h.DataSize() != dataSize {
			t.Fatalf("accepted a file whose tensors end at %d of %d data bytes", h.DataSize(), dataSize)
		}
		var end int64
		for _, x := range h.Tensors {
			if x.Begin != end && !(x.Size() == 0 && x.Begin <= end) {
				t.Fatalf("tensor %q at %d, previous ends at %d", x.Name, x.Begin, end)
			}
			end = max(end, x.End)
			if n, err := ByteSize(x.DType, x.Shape); err != nil || n != x.Size() {
				t.Fatalf("tensor %q: size %d, dtype/shape say %d (%v)", x.Name, x.Size(), n, err)
			}
		}
		head, err := EncodeHeader(h.Metadata, h.Tensors)
		if err != nil {
			t.Fatal(err)
		}
		again, err := read(append(head, data[h.DataStart:]...))
		if err != nil {
			t.Fatalf("re-encoded header does not read back: %v", err)
		}
		if !slices.EqualFunc(again.Tensors, h.Tensors, func(a, b Tensor) bool {
			return a.Name == b.Name && a.DType == b.DType && slices.Equal(a.Shape, b.Shape) && a.Begin == b.Begin && a.End == b.End
		}) || len(again.Metadata) != len(h.Metadata) {
			t.Fatalf("re-encoded header differs:\n%+v\n%+v", again, h)
		}
		if !bytes.Equal(head[:8], binary.LittleEndian.AppendUint64(nil, uint64(len(head)-8))) {
			t.Fatal("bad length prefix")
		}
	})
}
