package descriptor

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tdfs-kit/tdfs/internal/printable"
)

// Config is the descriptor's "config" block: the run settings of the image,
// applied over the base image's (as the matching Dockerfile instructions
// would). It applies to every 2DFS image, and a CIR carries it to apply at
// deploy time.
type Config struct {
	// Entrypoint and Cmd are exec-form argument lists. Set is false when the
	// key is absent (keep the base's); an empty list clears the base's.
	Entrypoint ArgList
	Cmd        ArgList
	// Env holds KEY=VALUE entries, in file order; a KEY the base sets is
	// replaced in place, others are appended.
	Env []string
	// WorkingDir is an absolute path; "" keeps the base's.
	WorkingDir string
	// User is "name", "uid", "name:group" or "uid:gid"; "" keeps the base's.
	User string
	// ExposedPorts are "port/proto" (proto tcp, udp or sctp), deduplicated:
	// the image config holds them as a set.
	ExposedPorts []string
	Pos          Position
}

// ArgList is an exec-form list that may be absent.
type ArgList struct {
	Set  bool
	Args []string
}

var configKeys = []string{"entrypoint", "cmd", "env", "workdir", "user", "exposedPorts"}

// config reads the "config" block.
func (p *parser) config(n *yaml.Node) *Config {
	c := &Config{Pos: pos(n)}
	if n.Kind != yaml.MappingNode {
		if n.Tag == "!!null" {
			return nil
		}
		p.add(pos(n), -1, nil, "config", "must be an object with any of "+strings.Join(configKeys, ", "))
		return nil
	}
	keys := p.mapping(n, configKeys, -1, nil, "config")
	if kv, ok := keys["entrypoint"]; ok {
		c.Entrypoint = p.argList(kv[1], "config.entrypoint")
	}
	if kv, ok := keys["cmd"]; ok {
		c.Cmd = p.argList(kv[1], "config.cmd")
	}
	if kv, ok := keys["env"]; ok {
		seen := map[string]int{}
		for j, item := range p.stringItems(kv[1], "config.env", `a list of "KEY=VALUE" strings`) {
			label := fmt.Sprintf("config.env[%d]", j)
			k, _, hasEq := strings.Cut(item.Value, "=")
			switch {
			case !hasEq:
				p.add(pos(item), -1, nil, label, fmt.Sprintf(`%s is not KEY=VALUE (write "%s=" for an empty value)`, quote(item.Value), k))
				continue
			case k == "" || strings.ContainsAny(k, " \t"):
				p.add(pos(item), -1, nil, label, fmt.Sprintf("%s: the variable name must be non-empty and hold no blanks", quote(item.Value)))
				continue
			case strings.ContainsFunc(item.Value, printable.IsControl):
				p.add(pos(item), -1, nil, label, "holds a control character; environment values must be printable")
				continue
			}
			if first, dup := seen[k]; dup {
				p.add(pos(item), -1, nil, label, fmt.Sprintf("%s is already set by config.env[%d]", k, first))
				continue
			}
			seen[k] = j
			c.Env = append(c.Env, item.Value)
		}
	}
	if kv, ok := keys["workdir"]; ok {
		c.WorkingDir = p.str(kv[1], -1, nil, "config.workdir")
		if kv[1].Tag == "!!str" {
			if msg := checkWorkdir(c.WorkingDir); msg != "" {
				p.add(pos(kv[1]), -1, nil, "config.workdir "+quote(c.WorkingDir), msg)
			} else {
				c.WorkingDir = path.Clean(c.WorkingDir)
			}
		}
	}
	if kv, ok := keys["user"]; ok {
		v := kv[1]
		// A bare uid is a number in YAML and JSON alike: take it as written.
		if v.Kind == yaml.ScalarNode && v.Tag == "!!int" {
			v = &yaml.Node{Kind: v.Kind, Tag: "!!str", Value: v.Value, Line: v.Line, Column: v.Column}
		}
		c.User = p.str(v, -1, nil, "config.user")
		if v.Tag == "!!str" {
			if msg := checkUser(c.User); msg != "" {
				p.add(pos(v), -1, nil, "config.user "+quote(c.User), msg)
			}
		}
	}
	if kv, ok := keys["exposedPorts"]; ok {
		c.ExposedPorts = p.ports(kv[1])
	}
	return c
}

// argList reads an exec-form list of strings. A single string is refused:
// the shell form needs a shell the image may not have, and would hide the
// split into arguments.
func (p *parser) argList(n *yaml.Node, name string) ArgList {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		p.add(pos(n), -1, nil, name, fmt.Sprintf(`must be a list of arguments (exec form), such as [%s]; for a shell command write ["/bin/sh", "-c", %s]`, strconv.Quote(n.Value), strconv.Quote(n.Value)))
		return ArgList{}
	}
	items := p.stringItems(n, name, "a list of strings (exec form)")
	if items == nil && n.Kind != yaml.SequenceNode {
		return ArgList{}
	}
	l := ArgList{Set: true, Args: []string{}}
	for _, it := range items {
		l.Args = append(l.Args, it.Value)
	}
	return l
}

// stringItems returns the string items of a list, reporting every item that
// is not a string; nil when n is not a list.
func (p *parser) stringItems(n *yaml.Node, name, want string) []*yaml.Node {
	if n.Kind != yaml.SequenceNode {
		p.add(pos(n), -1, nil, name, fmt.Sprintf("must be %s, got %s", want, describe(n)))
		return nil
	}
	var out []*yaml.Node
	for j, item := range n.Content {
		item = resolve(item)
		if item.Kind != yaml.ScalarNode || item.Tag != "!!str" {
			p.add(pos(item), -1, nil, fmt.Sprintf("%s[%d]", name, j), "must be a string, got "+describe(item))
			continue
		}
		out = append(out, item)
	}
	return out
}

func checkWorkdir(s string) string {
	if msg := checkName(s); msg != "" {
		return msg
	}
	if !path.IsAbs(s) {
		return "must be an absolute path in the image"
	}
	return ""
}

// userPart matches a user or group as runtimes accept it: a number, or a
// name as useradd allows.
func userPart(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	if _, err := strconv.ParseUint(s, 10, 32); err == nil {
		return true
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '_':
		case i > 0 && (r >= '0' && r <= '9' || r == '-' || r == '.' || (r == '$' && i == len(s)-1)):
		default:
			return false
		}
	}
	return true
}

func checkUser(s string) string {
	u, g, hasGroup := strings.Cut(s, ":")
	if !userPart(u) || hasGroup && !userPart(g) {
		return `must be "user", "uid", "user:group" or "uid:gid" (names of letters, digits, '_', '-', '.'; numbers below 2^32)`
	}
	return ""
}

// ports reads exposedPorts: numbers or "port[/proto]" strings.
func (p *parser) ports(n *yaml.Node) []string {
	if n.Kind != yaml.SequenceNode {
		p.add(pos(n), -1, nil, "config.exposedPorts", `must be a list of ports such as [8080, "53/udp"], got `+describe(n))
		return nil
	}
	set := map[string]bool{}
	var out []string
	for j, item := range n.Content {
		item = resolve(item)
		label := fmt.Sprintf("config.exposedPorts[%d]", j)
		if item.Kind != yaml.ScalarNode || (item.Tag != "!!str" && item.Tag != "!!int") {
			p.add(pos(item), -1, nil, label, `must be a port number or "port/proto", got `+describe(item))
			continue
		}
		port, proto, hasProto := strings.Cut(item.Value, "/")
		if !hasProto {
			proto = "tcp"
		}
		num, err := strconv.ParseUint(port, 10, 16)
		if err != nil || num == 0 || item.Tag == "!!int" && hasProto {
			p.add(pos(item), -1, nil, label, fmt.Sprintf("%s is not a port: want a number from 1 to 65535, optionally with /tcp, /udp or /sctp", describe(item)))
			continue
		}
		proto = strings.ToLower(proto)
		if proto != "tcp" && proto != "udp" && proto != "sctp" {
			p.add(pos(item), -1, nil, label, fmt.Sprintf("protocol %q is not tcp, udp or sctp", proto))
			continue
		}
		key := fmt.Sprintf("%d/%s", num, proto)
		if !set[key] {
			set[key] = true
			out = append(out, key)
		}
	}
	return out
}
