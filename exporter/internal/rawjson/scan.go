package rawjson

// A small scanner over JSON that encoding/json has already found valid: it
// finds where values start and end, so that Decode and Array can return
// slices of their input instead of copies.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// decodeObject splits a JSON object into its members. ok is false unless
// data is valid JSON and an object.
func decodeObject(data []byte) (o Object, ok bool) {
	if !json.Valid(data) {
		return nil, false
	}
	i := skipSpace(data, 0)
	if data[i] != '{' {
		return nil, false
	}
	o = Object{}
	i = skipSpace(data, i+1)
	if data[i] == '}' {
		return o, true
	}
	for {
		end := skipValue(data, i)
		key, ok := unquote(data[i:end])
		if !ok {
			return nil, false
		}
		i = skipSpace(data, skipSpace(data, end)+1) // past ':'
		end = skipValue(data, i)
		o[key] = data[i:end:end] // the cap keeps appends from writing into data
		i = skipSpace(data, end)
		if data[i] == '}' {
			return o, true
		}
		i = skipSpace(data, i+1) // past ','
	}
}

// decodeArray splits a JSON array into its elements; null is nil.
func decodeArray(data []byte) ([]json.RawMessage, bool) {
	if !json.Valid(data) {
		return nil, false
	}
	i := skipSpace(data, 0)
	if string(data[i:skipValue(data, i)]) == "null" {
		return nil, true
	}
	if data[i] != '[' {
		return nil, false
	}
	out := make([]json.RawMessage, 0, countElements(data, i))
	i = skipSpace(data, i+1)
	if data[i] == ']' {
		return out, true
	}
	for {
		end := skipValue(data, i)
		out = append(out, data[i:end:end])
		i = skipSpace(data, end)
		if data[i] == ']' {
			return out, true
		}
		i = skipSpace(data, i+1)
	}
}

// countElements counts the elements of the array that starts at i, so
// that a large one is split into a slice allocated once.
func countElements(data []byte, i int) int {
	n, depth, empty := 1, 0, true
	for ; i < len(data); i++ {
		switch c := data[i]; c {
		case '"':
			i = skipString(data, i) - 1
			empty = false
		case '{', '[':
			if depth == 1 {
				empty = false
			}
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				if empty {
					return 0
				}
				return n
			}
		case ',':
			if depth == 1 {
				n++
			}
		case ' ', '\t', '\n', '\r':
		default:
			empty = false
		}
	}
	return n
}

// Lookup returns the value of member key of obj, an object from Decode or
// an element from Array, matching names as encoding/json matches struct
// fields: ignoring ASCII case, the last one winning. It
// allocates nothing for plain names, so it suits scanning many small
// objects (history entries) for one field.
func Lookup(obj json.RawMessage, key string) (value json.RawMessage, ok bool) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, false
	}
	i = skipSpace(obj, i+1)
	for i < len(obj) && obj[i] == '"' {
		end := skipValue(obj, i)
		name := obj[i+1 : end-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			k, _ := unquote(obj[i:end])
			name = []byte(k)
		}
		i = skipSpace(obj, skipSpace(obj, end)+1)
		end = skipValue(obj, i)
		if equalFold(name, key) {
			value, ok = obj[i:end:end], true
		}
		i = skipSpace(obj, end)
		if i < len(obj) && obj[i] == ',' {
			i = skipSpace(obj, i+1)
		}
	}
	return value, ok
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipValue returns the end of the valid JSON value that starts at i.
func skipValue(data []byte, i int) int {
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for ; i < len(data); i++ {
			switch data[i] {
			case '"':
				i = skipString(data, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	default: // a number, true, false or null
		for i < len(data) {
			switch data[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

// skipString returns the end of the string that starts at i (past its
// closing quote).
func skipString(data []byte, i int) int {
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// unquote decodes a JSON string as encoding/json decodes a map key
// (escapes resolved, invalid UTF-8 replaced), without its machinery for
// the usual plain ASCII key.
func unquote(s []byte) (string, bool) {
	if len(s) < 2 || s[0] != '"' {
		return "", false
	}
	body := s[1 : len(s)-1]
	plain := true
	for _, c := range body {
		if c == '\\' || c >= utf8.RuneSelf {
			plain = false
			break
		}
	}
	if plain {
		return string(body), true
	}
	var k string
	if err := json.Unmarshal(s, &k); err != nil {
		return "", false
	}
	return k, true
}

// objectSize is an upper bound of the size of o marshaled.
func objectSize(o Object) int {
	n := 2
	for k, v := range o {
		n += len(k)*6 + 4 + max(len(v), 4)
	}
	return n
}

func arraySize(a []json.RawMessage) int {
	n := 2
	for _, v := range a {
		n += max(len(v), 4) + 1
	}
	return n
}

// appendObject appends o with sorted keys and compacted values, as
// encoding/json marshals a map[string]json.RawMessage without HTML
// escaping.
func appendObject(b []byte, o Object) ([]byte, error) {
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	var err error
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendKey(b, k)
		b = append(b, ':')
		if b, err = appendValue(b, o[k]); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

func appendArray(b []byte, a []json.RawMessage) ([]byte, error) {
	b = append(b, '[')
	var err error
	for i, v := range a {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = appendValue(b, v); err != nil {
			return nil, err
		}
	}
	return append(b, ']'), nil
}

// appendValue appends a raw value compacted; empty is null, as
// json.RawMessage(nil) marshals.
func appendValue(b []byte, v json.RawMessage) ([]byte, error) {
	if len(v) == 0 {
		return append(b, "null"...), nil
	}
	return appendCompact(b, v)
}

// appendKey appends k as a JSON string. encoding/json escapes only
// quotes, backslashes and control characters without HTML escaping, and
// rewrites invalid UTF-8 and U+2028/U+2029; keys with none of those are
// copied.
func appendKey(b []byte, k string) []byte {
	plain := true
	for i := 0; i < len(k); i++ {
		if c := k[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			plain = false
			break
		}
	}
	if plain && !strings.ContainsAny(k, "\u2028\u2029") {
		b = append(b, '"')
		b = append(b, k...)
		return append(b, '"')
	}
	raw, err := Marshal(k)
	if err != nil {
		panic(err) // a string always marshals
	}
	return append(b, raw...)
}

// appendCompact appends v with insignificant space removed; json.Compact
// writes into the buffer's spare capacity, so a presized b is not copied.
func appendCompact(b []byte, v json.RawMessage) ([]byte, error) {
	buf := bytes.NewBuffer(b)
	if err := json.Compact(buf, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// member is a member of an object: its key as written (quotes and all)
// and its value.
type member struct{ key, value []byte }

// AppendCanonical appends obj (an object from Decode or an element from
// Array) as Marshal(Decode(obj)) writes it: sorted keys, the last of
// duplicates, compacted values. For objects with plain ASCII keys, such as
// history entries, it does so without a map, so many small objects cost
// only the bytes they add to b.
func AppendCanonical(b []byte, obj json.RawMessage) ([]byte, error) {
	var stack [8]member
	members := stack[:0]
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, fmt.Errorf("not a JSON object: %.20q", obj)
	}
	plain := true
	for i = skipSpace(obj, i+1); i < len(obj) && obj[i] == '"'; {
		end := skipValue(obj, i)
		key := obj[i:end]
		for _, c := range key[1 : len(key)-1] {
			if c == '\\' || c >= utf8.RuneSelf {
				plain = false
			}
		}
		i = skipSpace(obj, skipSpace(obj, end)+1)
		end = skipValue(obj, i)
		members = append(members, member{key, obj[i:end]})
		i = skipSpace(obj, end)
		if i < len(obj) && obj[i] == ',' {
			i = skipSpace(obj, i+1)
		}
	}
	if !plain {
		o, err := Decode(obj, "object")
		if err != nil {
			return nil, err
		}
		return appendObject(b, o)
	}
	// Stable, so that of equal keys the last stays last.
	slices.SortStableFunc(members, func(x, y member) int { return bytes.Compare(x.key[1:len(x.key)-1], y.key[1:len(y.key)-1]) })
	b = append(b, '{')
	first := true
	for k, m := range members {
		if k+1 < len(members) && bytes.Equal(m.key, members[k+1].key) {
			continue // a later duplicate wins
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, m.key...)
		b = append(b, ':')
		var err error
		if b, err = appendValue(b, m.value); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// equalFold is bytes.EqualFold (which encoding/json matches names with)
// without converting key for the usual ASCII name.
func equalFold(name []byte, key string) bool {
	for _, c := range name {
		if c >= utf8.RuneSelf {
			return bytes.EqualFold(name, []byte(key))
		}
	}
	if len(name) != len(key) {
		return false
	}
	for i, c := range name {
		k := key[i]
		if c == k {
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= k && k <= 'Z' {
			k += 'a' - 'A'
		}
		if c != k || c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}
