// Package descriptor parses and validates 2DFS descriptors (2dfs.json or
// 2dfs.yaml). It is pure: bytes in, a validated Descriptor or a list of
// located errors out. Checking sources against the build context happens in
// Plan, through a stat function the caller provides.
package descriptor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/tdfs-kit/tdfs/field"
	"github.com/tdfs-kit/tdfs/internal/printable"
)

// DefaultFilenames are the names the frontend looks for, in order, when no
// filename is given.
var DefaultFilenames = []string{"2dfs.json", "2dfs.yaml", "2dfs.yml"}

// MaxSize caps the descriptor file. Descriptors list paths, not data; a
// larger file is a mistake (a model split passed with -f).
const MaxSize = 4 << 20

// Checking a descriptor costs about a microsecond for each value (key,
// scalar, list or object) it stands for once YAML aliases are expanded, and
// a few kilobytes of aliases of aliases can stand for billions. Aliases may
// therefore at most double the values a file writes out, or add
// AliasValues to a small file, which keeps the work linear in the file's
// size; MaxValues caps the whole (a JSON file of MaxSize bytes holds fewer:
// JSON needs two bytes a value).
const (
	AliasValues = 100_000
	MaxValues   = MaxSize / 2
)

// File-name and path limits of Linux (NAME_MAX, PATH_MAX less the NUL): a
// longer src or dst fails deep inside BuildKit with a message about lstat
// or gRPC headers, so it is refused up front.
const (
	maxComponent = 255
	maxPath      = 4095
)

// utf8BOM is the byte-order mark some Windows editors write at the start
// of a UTF-8 file.
var utf8BOM = []byte("\xEF\xBB\xBF")

// Descriptor is a parsed and validated 2DFS descriptor.
type Descriptor struct {
	Filename string
	// Syntax is the optional top-level "syntax" key BuildKit uses to pick
	// the frontend image. The frontend itself ignores it.
	Syntax string
	// Base is the image the field is built on; empty means scratch.
	Base       string
	BasePos    Position
	Allotments []Allotment
	// Config is the "config" block (config.go); nil when absent.
	Config *Config
	// Dependencies is the "dependencies" block (dependencies.go) that makes
	// the build a CIR; nil when absent.
	Dependencies *Dependencies
	// Lock is the lock file a deploy descriptor names (ParseDeploy), a
	// path in the build context; "" for none.
	Lock    string
	LockPos Position
}

// Allotment is one entry of the descriptor's "allotments" list.
type Allotment struct {
	// Index is the position in the file's list, used in messages.
	Index int
	Cell  field.Cell
	Src   []string
	Dst   []string
	// Pos is where the allotment starts; SrcPos and DstPos locate each entry.
	Pos    Position
	SrcPos []Position
	DstPos []Position

	// Checksum pins URL sources: parallel to Src, "" for a path. See
	// sources.go for these keys.
	Checksum    []string
	ChecksumPos []Position
	// AuthSecret names the BuildKit secret holding the Authorization header
	// for the allotment's URLs.
	AuthSecret    string
	AuthSecretPos Position
	// From names an image or named build context the Src paths are read in.
	From    string
	FromPos Position
	// Unpinned lets URL sources go without a checksum.
	Unpinned bool
}

// Sources returns every build-context src of every allotment (not URLs, not
// paths read from other images or contexts), deduplicated and sorted: the
// only paths the build needs from the context.
func (d *Descriptor) Sources() []string {
	var srcs []string
	for _, a := range d.Allotments {
		if a.From != "" {
			continue
		}
		for _, s := range a.Src {
			if !IsURL(s) {
				srcs = append(srcs, s)
			}
		}
	}
	slices.Sort(srcs)
	return slices.Compact(srcs)
}

var (
	topLevelKeys  = []string{"syntax", "base", "config", "dependencies", "allotments"}
	allotmentKeys = []string{"src", "dst", "row", "col", "checksum", "authSecret", "from", "unpinned"}
	// requiredKeys are the allotment keys every allotment must have.
	requiredKeys = allotmentKeys[:4]
)

// Parse reads a descriptor. The format is YAML when the file name ends in
// .yaml or .yml, JSON otherwise (JSON syntax errors get JSON's own messages).
// Every problem found is returned in one ErrorList.
func Parse(filename string, data []byte) (*Descriptor, error) {
	p := &parser{file: filename}
	if len(bytes.TrimSpace(bytes.TrimPrefix(data, utf8BOM))) == 0 && len(data) <= MaxSize {
		return nil, p.fail(Position{}, -1, nil, "", `the descriptor is empty; it needs at least {"allotments": []}`)
	}
	doc, err := p.decode(data)
	if err != nil {
		return nil, err
	}
	d := &Descriptor{Filename: filename}
	p.document(doc, d)
	if err := p.errs.err(); err != nil {
		return nil, err
	}
	return d, nil
}

// decode checks the file's size, syntax and YAML aliases and returns its
// one document (a zero node for a blank file).
func (p *parser) decode(data []byte) (*yaml.Node, error) {
	if len(data) > MaxSize {
		return nil, p.fail(Position{}, -1, nil, "", fmt.Sprintf("file is %d bytes, over the %d byte limit for a descriptor", len(data), MaxSize))
	}
	data = bytes.TrimPrefix(data, utf8BOM)
	if len(bytes.TrimSpace(data)) == 0 {
		return &yaml.Node{}, nil
	}
	if !isYAMLName(p.file) {
		if err := checkJSON(data); err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				msg := se.Error()
				if msg == "" {
					msg = "unexpected data after the top-level object"
				}
				return nil, p.fail(offsetPosition(data, se.Offset), -1, nil, "", "invalid JSON: "+msg)
			}
			return nil, p.fail(Position{}, -1, nil, "", "invalid JSON: "+err.Error())
		}
	}
	// yaml.v3 keeps aliases as pointers in a yaml.Node: decoding costs the
	// file's size, and only a walk that follows aliases can blow up.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc, next yaml.Node
	if err := dec.Decode(&doc); err != nil && err != io.EOF {
		return nil, p.fail(yamlErrorPosition(err), -1, nil, "", "invalid YAML: "+yamlLinePrefix.ReplaceAllString(err.Error(), ""))
	}
	switch err := dec.Decode(&next); {
	case err == io.EOF:
	case err != nil:
		return nil, p.fail(yamlErrorPosition(err), -1, nil, "", "invalid YAML: "+yamlLinePrefix.ReplaceAllString(err.Error(), ""))
	default:
		return nil, p.fail(documentPosition(&next), -1, nil, "", "a second YAML document starts here; a descriptor is one document (remove the \"---\" line and what follows, or merge the allotments into one list)")
	}
	written := countNodes(&doc)
	limit := min(MaxValues, written+max(written, AliasValues))
	if at, over := expandsPast(&doc, limit); over {
		return nil, p.fail(pos(at), -1, nil, "", fmt.Sprintf("YAML aliases expand the descriptor past %d values here (aliases may add at most %d to the %d values it writes out, up to %d in all); alias less, or write the entries out", limit, max(written, AliasValues), written, MaxValues))
	}
	return &doc, nil
}

func isYAMLName(name string) bool {
	return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
}

// checkJSON reports JSON syntax errors with their byte offset; yaml.v3 would
// accept the input with a less helpful message or not at all.
func checkJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	// A RawMessage is only scanned, not built: the check costs no memory.
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil {
		return err
	}
	if rest := data[dec.InputOffset():]; len(bytes.TrimSpace(rest)) > 0 {
		off := dec.InputOffset() + int64(len(rest)-len(bytes.TrimLeft(rest, " \t\r\n")))
		return &json.SyntaxError{Offset: off}
	}
	return nil
}

// yaml.v3 puts the line in the message ("yaml: line 3: did not find ...").
var yamlLinePrefix = regexp.MustCompile(`^yaml: (line \d+: )?`)

func yamlErrorPosition(err error) Position {
	var line int
	if _, scanErr := fmt.Sscanf(err.Error(), "yaml: line %d:", &line); scanErr == nil {
		return Position{Line: line, Column: 1}
	}
	return Position{}
}

func offsetPosition(data []byte, offset int64) Position {
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	before := data[:offset]
	line := bytes.Count(before, []byte("\n")) + 1
	col := int(offset) - bytes.LastIndexByte(before, '\n')
	return Position{Line: line, Column: col}
}

// documentPosition locates a document at its "---" line, or at its first
// node when it has none.
func documentPosition(doc *yaml.Node) Position {
	if doc.Line == 0 && len(doc.Content) > 0 {
		return pos(doc.Content[0])
	}
	return pos(doc)
}

// countNodes counts the nodes of the tree as written, an alias being one.
func countNodes(n *yaml.Node) int {
	total := 1
	if n.Kind != yaml.AliasNode {
		for _, c := range n.Content {
			total += countNodes(c)
		}
	}
	return total
}

// expandsPast reports whether n stands for more than limit nodes once every
// alias is replaced by what it names, and if so the first node in document
// order at which the running count passes the limit. Sizes of anchored
// nodes are remembered, so the check costs the file's size, not the
// expansion's; an anchor whose value contains an alias of itself (yaml.v3
// accepts "&a [*a]") stands for infinitely many.
func expandsPast(n *yaml.Node, limit int) (*yaml.Node, bool) {
	s := sizer{limit: limit, memo: map[*yaml.Node]int{}}
	if s.size(n) <= limit {
		return nil, false
	}
	budget := limit
	for {
		if n.Kind == yaml.AliasNode {
			return n, true
		}
		budget--
		if budget < 0 {
			return n, true
		}
		next := n
		for _, c := range n.Content {
			sz := s.size(c)
			if sz > budget {
				next = c
				break
			}
			budget -= sz
		}
		if next == n {
			return n, true
		}
		n = next
	}
}

type sizer struct {
	limit int
	// memo holds the size of anchored nodes, and -1 while one is being
	// sized, which marks an alias to an enclosing node.
	memo map[*yaml.Node]int
}

// size counts the nodes n stands for, stopping at limit+1.
func (s *sizer) size(n *yaml.Node) int {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
		if n.Kind == yaml.AliasNode {
			return s.size(n)
		}
	}
	if n.Anchor != "" {
		if v, ok := s.memo[n]; ok {
			if v < 0 {
				return s.limit + 1
			}
			return v
		}
		s.memo[n] = -1
	}
	total := 1
	for _, c := range n.Content {
		total += s.size(c)
		if total > s.limit {
			total = s.limit + 1
			break
		}
	}
	if n.Anchor != "" {
		s.memo[n] = total
	}
	return total
}

type parser struct {
	file string
	errs ErrorList
}

func (p *parser) add(pos Position, allotment int, cell *field.Cell, key, msg string) {
	if len(p.errs.Errors) == MaxErrors {
		p.errs.More++
		return
	}
	p.errs.Errors = append(p.errs.Errors, &Error{File: p.file, Pos: pos, Allotment: allotment, Cell: cell, Key: key, Msg: msg})
}

func (p *parser) fail(pos Position, allotment int, cell *field.Cell, key, msg string) error {
	p.add(pos, allotment, cell, key, msg)
	return &p.errs
}

func pos(n *yaml.Node) Position { return Position{Line: n.Line, Column: n.Column} }

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// mapping walks a mapping node, reporting duplicate and unknown keys, and
// returns the value node of each known key with the key's node.
func (p *parser) mapping(n *yaml.Node, known []string, allotment int, cell *field.Cell, what string) map[string][2]*yaml.Node {
	out := map[string][2]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			p.add(pos(k), allotment, cell, "", fmt.Sprintf("a key in %s must be a string, got %s", what, describe(k)))
			continue
		}
		key := k.Value
		if prev, dup := out[key]; dup {
			p.add(pos(k), allotment, cell, key, fmt.Sprintf("key given twice (first at line %d)", prev[0].Line))
			continue
		}
		if !slices.Contains(known, key) {
			msg := fmt.Sprintf("unknown key in %s (known keys: %s)", what, strings.Join(known, ", "))
			if s := suggest(key, known); s != "" {
				msg = fmt.Sprintf("unknown key in %s; did you mean %q? (known keys: %s)", what, s, strings.Join(known, ", "))
			}
			p.add(pos(k), allotment, cell, quote(key), msg)
			continue
		}
		out[key] = [2]*yaml.Node{k, v}
	}
	return out
}

func (p *parser) document(doc *yaml.Node, d *Descriptor) {
	if doc.Kind == 0 || len(doc.Content) == 0 {
		p.add(Position{}, -1, nil, "", `the descriptor is empty; it needs at least {"allotments": []}`)
		return
	}
	root := resolve(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		p.add(pos(root), -1, nil, "", "the descriptor must be an object with an \"allotments\" list")
		return
	}
	keys := p.mapping(root, topLevelKeys, -1, nil, "the descriptor")
	if kv, ok := keys["syntax"]; ok {
		d.Syntax = p.str(kv[1], -1, nil, "syntax")
	}
	if kv, ok := keys["base"]; ok {
		d.Base = p.str(kv[1], -1, nil, "base")
		d.BasePos = pos(kv[1])
		if strings.TrimSpace(d.Base) == "" {
			p.add(pos(kv[1]), -1, nil, "base", "must name an image (leave the key out for scratch)")
		}
	}
	if kv, ok := keys["config"]; ok {
		d.Config = p.config(kv[1])
	}
	if kv, ok := keys["dependencies"]; ok {
		d.Dependencies = p.dependencies(kv[1])
		if d.Dependencies != nil && (d.Base == "" || d.Base == "scratch") {
			p.add(pos(kv[0]), -1, nil, "dependencies", `needs a "base": the Debian image (with python3 for pip) the dependencies are resolved against and assembled on`)
		}
	}
	kv, ok := keys["allotments"]
	if !ok {
		p.add(pos(root), -1, nil, "", `missing key "allotments" (use [] for an image with no allotments)`)
		return
	}
	list := kv[1]
	if list.Kind != yaml.SequenceNode {
		if list.Tag == "!!null" {
			return
		}
		p.add(pos(list), -1, nil, "allotments", "must be a list")
		return
	}
	seen := map[field.Cell]int{}
	for i, item := range list.Content {
		item = resolve(item)
		a, ok := p.allotment(i, item)
		if !ok {
			continue
		}
		if first, dup := seen[a.Cell]; dup {
			p.add(a.Pos, i, &a.Cell, "", fmt.Sprintf("cell (row %d, col %d) is already used by allotments[%d]; each cell holds one allotment", a.Cell.Row, a.Cell.Col, first))
			continue
		}
		seen[a.Cell] = i
		d.Allotments = append(d.Allotments, a)
	}
}

func (p *parser) allotment(i int, n *yaml.Node) (Allotment, bool) {
	a := Allotment{Index: i, Pos: pos(n)}
	if n.Kind != yaml.MappingNode {
		p.add(pos(n), i, nil, "", "must be an object with src, dst, row and col")
		return a, false
	}
	before := p.errs.Len()
	keys := p.mapping(n, allotmentKeys, i, nil, "an allotment")
	var cell *field.Cell
	rowKV, hasRow := keys["row"]
	colKV, hasCol := keys["col"]
	if hasRow && hasCol {
		r, rok := p.coordinate(rowKV[1], i, "row")
		c, cok := p.coordinate(colKV[1], i, "col")
		if rok && cok {
			a.Cell = field.Cell{Row: r, Col: c}
			cell = &a.Cell
		}
	}
	// Errors found so far (unknown keys) were reported before the cell was
	// known; attach it now so every message names the allotment fully.
	for _, e := range p.errs.Errors[min(before, len(p.errs.Errors)):] {
		e.Cell = cell
	}
	for _, k := range requiredKeys {
		if _, ok := keys[k]; !ok {
			p.add(pos(n), i, cell, "", fmt.Sprintf("missing key %q", k))
		}
	}
	p.sources(&a, keys, cell)
	if kv, ok := keys["dst"]; ok {
		a.Dst, a.DstPos = p.paths(kv[1], i, cell, "dst")
		for j, s := range a.Dst {
			if msg := checkDst(s); msg != "" {
				p.add(a.DstPos[j], i, cell, fmt.Sprintf("dst[%d] %s", j, quote(s)), msg)
			}
		}
	}
	if a.Src != nil && a.Dst != nil && len(a.Src) != len(a.Dst) {
		p.add(pos(keys["dst"][1]), i, cell, "dst", fmt.Sprintf("lists %d paths but src lists %d; each src needs its own dst", len(a.Dst), len(a.Src)))
	}
	return a, p.errs.Len() == before
}

func (p *parser) str(n *yaml.Node, allotment int, cell *field.Cell, name string) string {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		p.add(pos(n), allotment, cell, name, "must be a string")
		return ""
	}
	return n.Value
}

func (p *parser) coordinate(n *yaml.Node, allotment int, name string) (int, bool) {
	if n.Kind == yaml.ScalarNode && allDigits.MatchString(n.Value) && n.Tag != "!!str" {
		// Integers too large for int64 are tagged as floats by yaml.v3.
		n = &yaml.Node{Kind: n.Kind, Tag: "!!int", Value: n.Value, Line: n.Line, Column: n.Column}
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		p.add(pos(n), allotment, nil, name, fmt.Sprintf("must be an integer from 0 to %d, got %s", field.MaxCoordinate, describe(n)))
		return 0, false
	}
	v, err := strconv.ParseInt(n.Value, 0, 64)
	if err != nil || v < 0 || v > field.MaxCoordinate {
		p.add(pos(n), allotment, nil, name, fmt.Sprintf("%s is out of range; rows and columns go from 0 to %d", n.Value, field.MaxCoordinate))
		return 0, false
	}
	return int(v), true
}

var allDigits = regexp.MustCompile(`^-?[0-9]+$`)

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "an object"
	}
	switch n.Tag {
	case "!!str":
		return quote(n.Value)
	case "!!null":
		return "null"
	}
	if len(n.Value) > 64 || strings.ContainsFunc(n.Value, printable.IsControl) {
		return quote(n.Value)
	}
	return n.Value
}

// quote quotes a value from the descriptor for a message, shortening long
// ones: the message must name the value, not repeat a 4 KiB path 50 times.
func quote(s string) string {
	const keep = 64
	if len(s) <= keep+16 {
		return strconv.Quote(s)
	}
	cut := keep
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(s[:cut]), len(s))
}

// paths reads a path or a non-empty list of paths.
func (p *parser) paths(n *yaml.Node, allotment int, cell *field.Cell, name string) ([]string, []Position) {
	return p.stringList(n, allotment, cell, name, "a path or a list of paths", "a string path")
}

// stringList reads a string or a non-empty list of strings (empty strings
// allowed, for list entries that do not apply). want says what the value
// must be, item what each entry must be.
func (p *parser) stringList(n *yaml.Node, allotment int, cell *field.Cell, name, want, item string) ([]string, []Position) {
	items := []*yaml.Node{n}
	switch n.Kind {
	case yaml.ScalarNode:
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			p.add(pos(n), allotment, cell, name, "must not be an empty list")
			return nil, nil
		}
		items = n.Content
	default:
		p.add(pos(n), allotment, cell, name, "must be "+want)
		return nil, nil
	}
	out := make([]string, 0, len(items))
	at := make([]Position, 0, len(items))
	for j, it := range items {
		it = resolve(it)
		label := name
		if n.Kind == yaml.SequenceNode {
			label = fmt.Sprintf("%s[%d]", name, j)
		}
		if it.Kind != yaml.ScalarNode || it.Tag != "!!str" {
			p.add(pos(it), allotment, cell, label, "must be "+item+", got "+describe(it))
			return nil, nil
		}
		out = append(out, it.Value)
		at = append(at, pos(it))
	}
	return out, at
}

// checkName returns what is wrong with a path as a file name on Linux, or
// "": control characters (which also garble terminals and progress output)
// and lengths past the kernel's limits.
func checkName(s string) string {
	for i, r := range s {
		if printable.IsControl(r) && !(r == utf8.RuneError && strings.HasPrefix(s[i:], "\uFFFD")) {
			c := strconv.QuoteRune(r)
			if r == utf8.RuneError {
				c = fmt.Sprintf("byte 0x%02x (not UTF-8)", s[i])
			}
			return fmt.Sprintf("holds the control character %s at byte %d; paths must be printable", c, i)
		}
	}
	if len(s) > maxPath {
		return fmt.Sprintf("is %d bytes long, over the %d-byte limit for a path", len(s), maxPath)
	}
	for _, c := range strings.Split(s, "/") {
		if len(c) > maxComponent {
			return fmt.Sprintf("has a %d-byte component %s, over the %d-byte limit for a file name", len(c), quote(c), maxComponent)
		}
	}
	return ""
}

// checkSrcName returns what is wrong with any source path, wherever it is
// read (the build context, another image, a named context), or "".
func checkSrcName(s string) string {
	if msg := checkName(s); msg != "" {
		return msg
	}
	switch {
	case s == "":
		return "must not be empty"
	case strings.ContainsAny(s, "*?["):
		return "wildcards are not supported; list the files or name a directory"
	}
	return ""
}

// checkSrc returns what is wrong with a source path, or "".
func checkSrc(s string) string {
	if msg := checkSrcName(s); msg != "" {
		return msg
	}
	switch {
	case path.IsAbs(s):
		return "must be relative to the build context, not absolute"
	}
	if c := path.Clean(s); c == ".." || strings.HasPrefix(c, "../") {
		return "escapes the build context"
	}
	return ""
}

// checkDst returns what is wrong with a destination path, or "".
func checkDst(s string) string {
	if msg := checkName(s); msg != "" {
		return msg
	}
	switch {
	case s == "":
		return "must not be empty"
	case !path.IsAbs(s):
		return "must be an absolute path in the image"
	case slices.Contains(strings.Split(s, "/"), ".."):
		return `must not contain ".."`
	case path.Clean(s) == "/":
		return "must not be / itself; name a file or directory under it"
	}
	return ""
}

// suggest returns the known key closest to a misspelt one, if any is close.
func suggest(key string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(key), k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
