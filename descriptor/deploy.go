package descriptor

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// deployLockKey names, in a deploy descriptor, the lock file the deploy
// follows (docs/cir.md, "Lock files"): a path in the build context, as a
// Dockerfile's COPY sources are.
const deployLockKey = "lock"

// lockPathProblem says why a "lock" value is not a path in the build
// context, or "".
func lockPathProblem(v string) string {
	switch c := path.Clean(v); {
	case v == "":
		return "is empty; name the lock file by its path in the build context, or leave \"lock\" out"
	case strings.HasPrefix(v, "/"):
		return fmt.Sprintf("%q is absolute; name the lock file by its path in the build context", v)
	case c == "." || c == ".." || strings.HasPrefix(c, "../"):
		return fmt.Sprintf("%q is not a file in the build context", v)
	case strings.Contains(v, "\\"):
		return fmt.Sprintf("%q has a backslash; separate folders with /", v)
	}
	return ""
}

// ParseDeploy reads the descriptor of a build that assembles a CIR (the
// frontend's "cir" named context). The CIR brings its base, dependencies,
// config and application, so such a descriptor exists only because docker
// buildx and bake need a file to read the frontend from: it may hold the
// "syntax" key, the "lock" file to follow, and nothing else, and may be
// empty. Every other key is an error at its line, so an application
// descriptor handed to a deploy by mistake is not silently ignored.
func ParseDeploy(filename string, data []byte) (*Descriptor, error) {
	p := &parser{file: filename}
	doc, err := p.decode(data)
	if err != nil {
		return nil, err
	}
	d := &Descriptor{Filename: filename}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return d, nil
	}
	root := resolve(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		return nil, p.fail(pos(root), -1, nil, "", `a descriptor that deploys a CIR must be an object, at most {"syntax": "FRONTEND"}`)
	}
	known := append(slices.Clone(topLevelKeys), deployLockKey)
	keys := p.mapping(root, known, -1, nil, "the descriptor")
	for _, key := range known {
		kv, ok := keys[key]
		switch {
		case !ok:
		case key == "syntax":
			d.Syntax = p.str(kv[1], -1, nil, "syntax")
		case key == deployLockKey:
			d.LockPos = pos(kv[1])
			if v := p.str(kv[1], -1, nil, key); kv[1].Tag == "!!str" {
				if msg := lockPathProblem(v); msg != "" {
					p.add(pos(kv[1]), -1, nil, key, msg)
				} else {
					d.Lock = path.Clean(v)
				}
			}
		default:
			p.add(pos(kv[0]), -1, nil, key, fmt.Sprintf("not allowed when the build deploys a CIR (the %q named context): the CIR brings its base, dependencies, config and application; this descriptor may name the frontend (\"syntax\") and a lock file (\"lock\"), nothing else", CIRContextName))
		}
	}
	if err := p.errs.err(); err != nil {
		return nil, err
	}
	return d, nil
}

// CIRContextName is the named build context that makes a build assemble a
// CIR (docker buildx build --build-context cir=docker-image://REF).
const CIRContextName = "cir"
