package descriptor

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Dependencies is the descriptor's "dependencies" block. A descriptor with
// one builds a CIR (Container Intermediate Representation, docs/cir.md): the
// image holds the application allotments and these direct dependencies by
// name; 2dfs deploy resolves and assembles them per platform. Keys follow
// the rest of the schema: lowercase, camelCase for compound names.
type Dependencies struct {
	// Apt are Debian packages of the base image's release.
	Apt []AptPackage
	// Pip are PEP 508 requirements, resolved to wheels only.
	Pip []PipRequirement
	// PipIndex is the PEP 503 simple index URL; "" means DefaultPipIndex.
	PipIndex string
	// PipAuthSecret names the BuildKit secret holding the Authorization
	// header value for PipIndex (never the credentials themselves).
	PipAuthSecret string
	Pos           Position
}

// DefaultPipIndex is the index used when the descriptor names none.
const DefaultPipIndex = "https://pypi.org/simple"

// AptPackage is one "name" or "name=version" entry of dependencies.apt.
type AptPackage struct {
	Name    string
	Version string
	Pos     Position
}

func (a AptPackage) String() string {
	if a.Version == "" {
		return a.Name
	}
	return a.Name + "=" + a.Version
}

// PipRequirement is one entry of dependencies.pip: a project name, optional
// extras and an optional version specifier set.
type PipRequirement struct {
	// Name is the PEP 503 normalized project name.
	Name string
	// Extras are the extras asked for, as written.
	Extras []string
	// Specifier is the comma-separated version specifiers, blanks removed.
	Specifier string
	Pos       Position
}

func (r PipRequirement) String() string {
	s := r.Name
	if len(r.Extras) > 0 {
		s += "[" + strings.Join(r.Extras, ",") + "]"
	}
	return s + r.Specifier
}

var dependencyKeys = []string{"apt", "pip", "pipIndex", "pipAuthSecret"}

var (
	// Debian policy 5.6.1 and 5.6.12.
	debName    = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	debVersion = regexp.MustCompile(`^(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*$`)
	// PEP 508 names; PEP 440 versions in their accepted spellings.
	pipName     = regexp.MustCompile(`(?i)^[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?$`)
	pipVersion  = regexp.MustCompile(`(?i)^v?(?:[0-9]+!)?[0-9]+(?:\.[0-9]+)*(?:\.\*)?(?:[-_.]?(?:a|b|c|rc|alpha|beta|pre|preview)[-_.]?[0-9]*)?(?:-[0-9]+|[-_.]?(?:post|rev|r)[-_.]?[0-9]*)?(?:[-_.]?dev[-_.]?[0-9]*)?(?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?$`)
	pipOperator = regexp.MustCompile(`^(===|~=|==|!=|<=|>=|<|>)`)
	pipRun      = regexp.MustCompile(`[-_.]+`)
	// What BuildKit and buildx accept as a secret id in practice.
	dependencySecretID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

// NormalizePipName is the PEP 503 normal form of a project name.
func NormalizePipName(s string) string { return pipRun.ReplaceAllString(strings.ToLower(s), "-") }

// dependencies reads the "dependencies" block.
func (p *parser) dependencies(n *yaml.Node) *Dependencies {
	d := &Dependencies{Pos: pos(n)}
	if n.Kind != yaml.MappingNode {
		p.add(pos(n), -1, nil, "dependencies", "must be an object with any of "+strings.Join(dependencyKeys, ", ")+", got "+describe(n))
		return nil
	}
	keys := p.mapping(n, dependencyKeys, -1, nil, "dependencies")
	if kv, ok := keys["apt"]; ok {
		seen := map[string]AptPackage{}
		for j, item := range p.stringItems(kv[1], "dependencies.apt", "a list of Debian package names") {
			label := fmt.Sprintf("dependencies.apt[%d] %s", j, quote(item.Value))
			name, version, pinned := strings.Cut(item.Value, "=")
			switch {
			case !debName.MatchString(name):
				p.add(pos(item), -1, nil, label, "is not a Debian package name (lowercase letters, digits, '+', '-', '.'; at least 2 characters; pin a version with name=version)")
				continue
			case pinned && !debVersion.MatchString(version):
				p.add(pos(item), -1, nil, label, fmt.Sprintf("%s is not a Debian version ([epoch:]upstream[-revision], starting with a digit)", quote(version)))
				continue
			}
			pkg := AptPackage{Name: name, Version: version, Pos: pos(item)}
			if prev, dup := seen[name]; dup {
				p.add(pos(item), -1, nil, label, conflict(prev.String(), pkg.String(), prev.Pos))
				continue
			}
			seen[name] = pkg
			d.Apt = append(d.Apt, pkg)
		}
	}
	if kv, ok := keys["pip"]; ok {
		seen := map[string]PipRequirement{}
		for j, item := range p.stringItems(kv[1], "dependencies.pip", "a list of requirement specifiers such as \"requests==2.32.3\"") {
			label := fmt.Sprintf("dependencies.pip[%d] %s", j, quote(item.Value))
			req, msg := parseRequirement(item.Value)
			if msg != "" {
				p.add(pos(item), -1, nil, label, msg)
				continue
			}
			req.Pos = pos(item)
			if prev, dup := seen[req.Name]; dup {
				p.add(pos(item), -1, nil, label, conflict(prev.String(), req.String(), prev.Pos))
				continue
			}
			seen[req.Name] = req
			d.Pip = append(d.Pip, req)
		}
	}
	if kv, ok := keys["pipIndex"]; ok {
		d.PipIndex = p.str(kv[1], -1, nil, "dependencies.pipIndex")
		if kv[1].Tag == "!!str" {
			if msg := checkIndexURL(d.PipIndex); msg != "" {
				p.add(pos(kv[1]), -1, nil, "dependencies.pipIndex", msg)
			}
		}
	}
	if kv, ok := keys["pipAuthSecret"]; ok {
		d.PipAuthSecret = p.str(kv[1], -1, nil, "dependencies.pipAuthSecret")
		switch {
		case kv[1].Tag != "!!str":
		case !dependencySecretID.MatchString(d.PipAuthSecret):
			p.add(pos(kv[1]), -1, nil, "dependencies.pipAuthSecret", fmt.Sprintf("%s is not a secret id: use letters, digits, '.', '_' and '-', as in --secret id=NAME,src=FILE", quote(d.PipAuthSecret)))
		case d.PipIndex == "":
			p.add(pos(kv[1]), -1, nil, "dependencies.pipAuthSecret", `names the secret for "pipIndex", which is not set`)
		}
	}
	if len(d.Apt) == 0 && len(d.Pip) == 0 && p.errs.Len() == 0 {
		p.add(pos(n), -1, nil, "dependencies", `lists no packages; give "apt" or "pip" a package, or leave the block out for a plain 2DFS image`)
	}
	return d
}

func conflict(first, again string, at Position) string {
	if first == again {
		return fmt.Sprintf("is listed twice (first at line %d)", at.Line)
	}
	return fmt.Sprintf("conflicts with %s at line %d; list each package once", quote(first), at.Line)
}

// parseRequirement checks a PEP 508 requirement of the forms a lazy-builder
// can pin from an index: name, extras, version specifiers. Direct URLs and
// environment markers are refused with the reason.
func parseRequirement(s string) (PipRequirement, string) {
	var r PipRequirement
	rest := strings.TrimSpace(s)
	if strings.Contains(rest, ";") {
		return r, "environment markers are not supported: a CIR resolves for each target platform; list the requirement without \"; ...\""
	}
	if strings.Contains(rest, "@") {
		return r, "direct URL requirements are not supported: every wheel comes from the index, pinned by its hash"
	}
	end := strings.IndexAny(rest, "[(<>=!~ \t")
	if end < 0 {
		end = len(rest)
	}
	name := rest[:end]
	if !pipName.MatchString(name) {
		return r, "is not a requirement: want a project name (letters, digits, '.', '_', '-') and optional version specifiers such as \"==2.32.3\" or \">=4.66,<5\""
	}
	r.Name = NormalizePipName(name)
	rest = strings.TrimSpace(rest[end:])
	if strings.HasPrefix(rest, "[") {
		close := strings.Index(rest, "]")
		if close < 0 {
			return r, "extras are not closed with ']'"
		}
		for _, e := range strings.Split(rest[1:close], ",") {
			e = strings.TrimSpace(e)
			if !pipName.MatchString(e) {
				return r, fmt.Sprintf("extra %s is not a name", quote(e))
			}
			r.Extras = append(r.Extras, e)
		}
		rest = strings.TrimSpace(rest[close+1:])
	}
	if strings.HasPrefix(rest, "(") && strings.HasSuffix(rest, ")") {
		rest = strings.TrimSpace(rest[1 : len(rest)-1])
	}
	if rest == "" {
		return r, ""
	}
	var specs []string
	for _, clause := range strings.Split(rest, ",") {
		clause = strings.TrimSpace(clause)
		op := pipOperator.FindString(clause)
		if op == "" {
			return r, fmt.Sprintf("version specifier %s has no operator (==, !=, <=, >=, <, >, ~= or ===)", quote(clause))
		}
		v := strings.TrimSpace(clause[len(op):])
		switch {
		case op == "===" && v != "" && !strings.ContainsAny(v, " \t"):
		case !pipVersion.MatchString(v):
			return r, fmt.Sprintf("%s is not a PEP 440 version", quote(v))
		case strings.HasSuffix(v, ".*") && op != "==" && op != "!=":
			return r, fmt.Sprintf("a wildcard version %s only goes with == or !=", quote(v))
		}
		specs = append(specs, op+v)
	}
	r.Specifier = strings.Join(specs, ",")
	return r, ""
}

// checkIndexURL returns what is wrong with a package index URL, or "".
func checkIndexURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err
		}
		return "is not a valid URL: " + err.Error()
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	default:
		return fmt.Sprintf("URL scheme %q is not supported; an index is an http(s) URL", u.Scheme)
	}
	if u.Host == "" {
		return "URL has no host"
	}
	if u.User != nil {
		return `URL carries credentials (user info); never put them in the descriptor: store the Authorization header value in a file, pass it with --secret id=NAME,src=FILE and name it with "pipAuthSecret": "NAME"`
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "URL has a query or fragment; an index URL is a plain path (credentials go in a secret named by pipAuthSecret)"
	}
	return ""
}
