// Package printable keeps text from images, descriptors and registries safe
// to show on a terminal: a path or label that carries ESC or another control
// character must not move the cursor, recolour or erase what the user reads.
package printable

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// String escapes control characters (C0 but newline, DEL, C1) and invalid
// UTF-8 as Go would in a quoted string; other text is returned as it is.
func String(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r != '\n' && IsControl(r) }) {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r != '\n' && IsControl(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// IsControl reports C0 and C1 control characters, DEL, and the replacement
// rune that stands for bytes that are not UTF-8 (which a terminal may read
// as C1).
func IsControl(r rune) bool {
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == utf8.RuneError
}
