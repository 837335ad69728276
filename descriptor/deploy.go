package descriptor

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// ParseDeploy reads the descriptor of a build that assembles a CIR (the
// frontend's "cir" named context). The CIR brings its base, dependencies,
// config and application, so such a descriptor exists only because docker
// buildx and bake need a file to read the frontend from: it may hold the
// "syntax" key and nothing else, and may be empty. Every other key is an
// error at its line, so an application descriptor handed to a deploy by
// mistake is not silently ignored.
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
	keys := p.mapping(root, topLevelKeys, -1, nil, "the descriptor")
	for _, key := range topLevelKeys {
		kv, ok := keys[key]
		switch {
		case !ok:
		case key == "syntax":
			d.Syntax = p.str(kv[1], -1, nil, "syntax")
		default:
			p.add(pos(kv[0]), -1, nil, key, fmt.Sprintf("not allowed when the build deploys a CIR (the %q named context): the CIR brings its base, dependencies, config and application; this descriptor may name the frontend (\"syntax\") and nothing else", CIRContextName))
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
