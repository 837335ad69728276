// Package safetensors reads and writes the safetensors format: an 8-byte
// little-endian header length N, N bytes of JSON header, then the tensor
// data. The header names each tensor's dtype, shape and byte range in the
// data section, plus an optional "__metadata__" map of strings.
//
// Reading checks what the reference implementation checks, so a file this
// package accepts is one the reference loads: the header length is at most
// MaxHeaderSize and inside the file, every dtype is known, every byte range
// matches its dtype and shape, and the ranges tile the data section exactly
// (no overlaps, no gaps, nothing after the last tensor). Tensor bytes are
// never read here: callers stream them with Section, so memory stays bounded
// by the header whatever the size of the file.
package safetensors

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
)

// MaxHeaderSize caps the JSON header, as the reference implementation does
// (100,000,000 bytes). A larger header is a damaged or hostile file; the cap
// bounds the memory a header can take.
const MaxHeaderSize = 100_000_000

// MetadataKey is the header key of the free-form string map.
const MetadataKey = "__metadata__"

// DType is a tensor element type as the header spells it ("F16", "BF16"...).
type DType string

// dtypeBits lists the dtypes the format defines, with their width in bits.
// F4 and F6 are sub-byte: a tensor of them must fill whole bytes.
var dtypeBits = map[DType]int{
	"BOOL": 8, "U8": 8, "I8": 8,
	"F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
	"I16": 16, "U16": 16, "F16": 16, "BF16": 16,
	"I32": 32, "U32": 32, "F32": 32,
	"I64": 64, "U64": 64, "F64": 64, "C64": 64,
	"F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}

// Bits is the width of one element, or 0 for a dtype the format does not
// define.
func (d DType) Bits() int { return dtypeBits[d] }

// KnownDTypes lists the dtypes in a stable order, for messages.
func KnownDTypes() []string {
	out := make([]string, 0, len(dtypeBits))
	for d := range dtypeBits {
		out = append(out, string(d))
	}
	sort.Strings(out)
	return out
}

// Tensor is one header entry. Begin and End are byte offsets in the data
// section (after the header), End exclusive.
type Tensor struct {
	Name  string
	DType DType
	Shape []int64
	Begin int64
	End   int64
}

// Size is the tensor's byte length.
func (t Tensor) Size() int64 { return t.End - t.Begin }

// ByteSize returns the bytes a tensor of dtype d and shape needs, or an
// error when the dtype is unknown, a dimension is negative, the elements do
// not fill whole bytes or the size overflows int64.
func ByteSize(d DType, shape []int64) (int64, error) {
	bits := int64(d.Bits())
	if bits == 0 {
		return 0, fmt.Errorf("unknown dtype %q (known: %s)", string(d), strings.Join(KnownDTypes(), ", "))
	}
	n := int64(1)
	for _, dim := range shape {
		if dim < 0 {
			return 0, fmt.Errorf("shape %v has a negative dimension", shape)
		}
		if dim != 0 && n > (1<<63-1)/dim {
			return 0, fmt.Errorf("shape %v has too many elements", shape)
		}
		n *= dim
	}
	if n > (1<<63-1)/bits {
		return 0, fmt.Errorf("shape %v of %s is too many bytes", shape, d)
	}
	if n*bits%8 != 0 {
		return 0, fmt.Errorf("shape %v of %s is %d bits, not whole bytes", shape, d, n*bits)
	}
	return n * bits / 8, nil
}

// Header is a parsed and checked header.
type Header struct {
	// Metadata is the "__metadata__" map; nil when the file has none.
	Metadata map[string]string
	// Tensors are in data order (by Begin, then name for empty tensors).
	Tensors []Tensor
	// DataStart is the file offset of the data section: 8 + header length.
	DataStart int64
}

// DataSize is the length of the data section.
func (h *Header) DataSize() int64 {
	if len(h.Tensors) == 0 {
		return 0
	}
	return h.Tensors[len(h.Tensors)-1].End
}

// Lookup returns the tensor called name.
func (h *Header) Lookup(name string) (Tensor, bool) {
	for _, t := range h.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return Tensor{}, false
}

// ReadHeader reads and checks the header of a safetensors file of size
// bytes. It reads at most MaxHeaderSize+8 bytes, and never more than the
// file holds.
func ReadHeader(r io.ReaderAt, size int64) (*Header, error) {
	if size < 8 {
		return nil, fmt.Errorf("file is %d bytes, too short for the 8-byte header length", size)
	}
	var lenBuf [8]byte
	if _, err := r.ReadAt(lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("reading the header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > MaxHeaderSize {
		return nil, fmt.Errorf("header length %d is over the %d byte limit (not a safetensors file, or a damaged one)", n, MaxHeaderSize)
	}
	if int64(n) > size-8 {
		return nil, fmt.Errorf("header length %d runs past the end of the file (%d bytes follow the length; truncated?)", n, size-8)
	}
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, 8); err != nil {
		return nil, fmt.Errorf("reading the %d-byte header: %w", n, err)
	}
	h, err := ParseHeader(buf, size-8-int64(n))
	if err != nil {
		return nil, err
	}
	h.DataStart = 8 + int64(n)
	return h, nil
}

// File is an open safetensors file whose header has been checked.
type File struct {
	Path string
	Header
	f *os.File
}

// Open opens path and checks its header. Errors name the file.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	h, err := ReadHeader(f, st.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &File{Path: path, Header: *h, f: f}, nil
}

// Section reads the bytes of t (a tensor of this file).
func (f *File) Section(t Tensor) *io.SectionReader {
	return io.NewSectionReader(f.f, f.DataStart+t.Begin, t.Size())
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }

// sortTensors puts tensors in data order; empty tensors, which may share an
// offset with their neighbour, come first at that offset, by name.
func sortTensors(ts []Tensor) {
	slices.SortFunc(ts, func(a, b Tensor) int {
		if a.Begin != b.Begin {
			return cmpInt(a.Begin, b.Begin)
		}
		if a.End != b.End {
			return cmpInt(a.End, b.End)
		}
		return strings.Compare(a.Name, b.Name)
	})
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
