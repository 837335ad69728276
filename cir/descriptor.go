package cir

import (
	"slices"

	"github.com/tdfs-kit/tdfs/descriptor"
)

// NewRecord makes the record of a descriptor's dependencies and config,
// given the base pinned at pre-build.
func NewRecord(deps *descriptor.Dependencies, cfg *descriptor.Config, base Base) *Record {
	r := &Record{Version: RecordVersion, Base: base}
	slices.SortFunc(r.Base.Platforms, func(a, b BasePlatform) int {
		switch {
		case a.Platform < b.Platform:
			return -1
		case a.Platform > b.Platform:
			return 1
		}
		return 0
	})
	for _, a := range deps.Apt {
		r.Dependencies.Apt = append(r.Dependencies.Apt, a.String())
	}
	for _, p := range deps.Pip {
		r.Dependencies.Pip = append(r.Dependencies.Pip, p.String())
	}
	if len(deps.Pip) > 0 {
		r.Resolver.PipIndex = deps.PipIndex
		if r.Resolver.PipIndex == "" {
			r.Resolver.PipIndex = descriptor.DefaultPipIndex
		}
		r.Resolver.PipAuthSecret = deps.PipAuthSecret
	}
	if cfg != nil {
		if cfg.Entrypoint.Set {
			l := slices.Clone(cfg.Entrypoint.Args)
			r.Config.Entrypoint = &l
		}
		if cfg.Cmd.Set {
			l := slices.Clone(cfg.Cmd.Args)
			r.Config.Cmd = &l
		}
		r.Config.Env = slices.Clone(cfg.Env)
		r.Config.WorkingDir = cfg.WorkingDir
		r.Config.User = cfg.User
		r.Config.ExposedPorts = slices.Clone(cfg.ExposedPorts)
	}
	return r
}

// Descriptor returns the config as the descriptor's config block, to apply
// with llb.ApplyConfig at deploy.
func (c Config) Descriptor() *descriptor.Config {
	d := &descriptor.Config{
		Env:          slices.Clone(c.Env),
		WorkingDir:   c.WorkingDir,
		User:         c.User,
		ExposedPorts: slices.Clone(c.ExposedPorts),
	}
	if c.Entrypoint != nil {
		d.Entrypoint = descriptor.ArgList{Set: true, Args: slices.Clone(*c.Entrypoint)}
	}
	if c.Cmd != nil {
		d.Cmd = descriptor.ArgList{Set: true, Args: slices.Clone(*c.Cmd)}
	}
	return d
}
