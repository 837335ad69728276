package llb

import (
	"slices"
	"strings"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/descriptor"
)

// ApplyConfig applies a descriptor's config block to an image config with
// the Dockerfile's rules, so a user predicts the result from what they know:
// an entrypoint given without a cmd clears the base's cmd (as ENTRYPOINT
// does), env entries replace the base's variables of the same name in place
// and append the others, exposed ports add to the base's. Keys the block
// leaves out keep the base's values. It adds no history entry: the config
// is data of the image, not a layer.
func ApplyConfig(img *dockerspec.DockerOCIImage, c *descriptor.Config) {
	if c == nil {
		return
	}
	cfg := &img.Config
	if c.Entrypoint.Set {
		cfg.Entrypoint = slices.Clone(c.Entrypoint.Args)
		if !c.Cmd.Set {
			cfg.Cmd = nil
		}
	}
	if c.Cmd.Set {
		cfg.Cmd = slices.Clone(c.Cmd.Args)
	}
	if len(c.Env) > 0 {
		cfg.Env = mergeEnv(cfg.Env, c.Env)
	}
	if c.WorkingDir != "" {
		cfg.WorkingDir = c.WorkingDir
	}
	if c.User != "" {
		cfg.User = c.User
	}
	if len(c.ExposedPorts) > 0 {
		ports := make(map[string]struct{}, len(cfg.ExposedPorts)+len(c.ExposedPorts))
		for p := range cfg.ExposedPorts {
			ports[p] = struct{}{}
		}
		for _, p := range c.ExposedPorts {
			ports[p] = struct{}{}
		}
		cfg.ExposedPorts = ports
	}
}

// mergeEnv returns base with each KEY=VALUE of set replacing the entry of
// the same KEY, or appended when base has none.
func mergeEnv(base, set []string) []string {
	out := slices.Clone(base)
	for _, kv := range set {
		k, _, _ := strings.Cut(kv, "=")
		i := slices.IndexFunc(out, func(e string) bool { return strings.HasPrefix(e, k+"=") || e == k })
		if i >= 0 {
			out[i] = kv
		} else {
			out = append(out, kv)
		}
	}
	return out
}
