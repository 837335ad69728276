package tdfs_test

import (
	"bytes"
	"slices"
	"testing"

	"github.com/tdfs-kit/tdfs/exporter/tdfs"
)

// FuzzParseField checks that no blob makes the parser panic, and that what it
// accepts encodes to a canonical blob that parses back to the same cells.
func FuzzParseField(f *testing.F) {
	f.Add([]byte(referenceFieldJSON("a", "b", "c")))
	f.Add([]byte(`{"rows":[],"rows_size":0,"owner":""}`))
	f.Add([]byte(`{"rows":[{"allotments":[],"allotments_size":0}],"rows_size":1,"owner":""}`))
	f.Add([]byte(`{"rows":[{"allotments":[{"row":0,"col":0,"digest":"","diffid":""}],"allotments_size":1}],"rows_size":1,"owner":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		field, err := tdfs.ParseField(data)
		if err != nil {
			return
		}
		enc := field.Encode()
		again, err := tdfs.ParseField(enc)
		if err != nil {
			t.Fatalf("encoding of an accepted field does not parse: %v\n%s", err, enc)
		}
		if !slices.Equal(again.Entries, field.Entries) || !bytes.Equal(again.Encode(), enc) {
			t.Fatalf("round trip changed the field:\n%s\n%s", enc, again.Encode())
		}
	})
}
