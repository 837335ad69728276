package partitiontest

import (
	"testing"

	"github.com/tdfs-kit/tdfs/field"
)

// Selection parses a partition tag suffix ("0.0.1.1--2.0.2.0") for a test.
func Selection(t testing.TB, s string) field.Selection {
	t.Helper()
	_, out, err := field.ParseTag("x--" + s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
