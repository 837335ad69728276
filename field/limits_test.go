package field

import (
	"strings"
	"testing"
)

func TestRunnableWarning(t *testing.T) {
	if w := RunnableWarning(4, SafeRunnableLayers-4); w != "" {
		t.Errorf("at the safe limit: %q", w)
	}
	if w := RunnableWarning(4, SafeRunnableLayers-3); !strings.Contains(w, "385 layers (4 base + 381 allotments)") || !strings.Contains(w, "mount options is too long") {
		t.Errorf("past the safe limit: %q", w)
	}
	if w := RunnableWarning(2, MaxRunnableLayers-1); !strings.Contains(w, "501 layers (2 base + 499 allotments), more than the 500 overlayfs stacks") || !strings.Contains(w, "partitions") {
		t.Errorf("past the overlayfs limit: %q", w)
	}
}
