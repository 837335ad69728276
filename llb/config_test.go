package llb

import (
	"reflect"
	"testing"

	bkllb "github.com/moby/buildkit/client/llb"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/descriptor"
)

func TestConvertAppliesConfig(t *testing.T) {
	base := &dockerspec.DockerOCIImage{}
	base.OS, base.Architecture = "linux", "amd64"
	base.Config.Env = []string{"PATH=/usr/bin", "LANG=C"}
	base.Config.Entrypoint = []string{"/docker-entrypoint.sh"}
	base.Config.Cmd = []string{"bash"}
	base.Config.ExposedPorts = map[string]struct{}{"22/tcp": {}}
	base.Config.WorkingDir = "/root"
	res, err := Convert(planned(), Options{
		Context: bkllb.Local("context"), Base: bkllb.Image("base"), BaseImage: base, Platform: amd64,
		Config: &descriptor.Config{
			Entrypoint:   descriptor.ArgList{Set: true, Args: []string{"python3", "/app/main.py"}},
			Env:          []string{"LANG=C.UTF-8", "PYTHONUNBUFFERED=1"},
			User:         "1000:1000",
			ExposedPorts: []string{"8080/tcp"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Image.Config
	if !reflect.DeepEqual(c.Entrypoint, []string{"python3", "/app/main.py"}) || c.Cmd != nil {
		t.Errorf("entrypoint %q cmd %q: an entrypoint without cmd must clear the base's cmd", c.Entrypoint, c.Cmd)
	}
	if !reflect.DeepEqual(c.Env, []string{"PATH=/usr/bin", "LANG=C.UTF-8", "PYTHONUNBUFFERED=1"}) {
		t.Errorf("env %q", c.Env)
	}
	if c.User != "1000:1000" || c.WorkingDir != "/root" {
		t.Errorf("user %q workdir %q", c.User, c.WorkingDir)
	}
	if !reflect.DeepEqual(c.ExposedPorts, map[string]struct{}{"22/tcp": {}, "8080/tcp": {}}) {
		t.Errorf("ports %v", c.ExposedPorts)
	}
	// The base's config is not touched.
	if !reflect.DeepEqual(base.Config.Env, []string{"PATH=/usr/bin", "LANG=C"}) || len(base.Config.ExposedPorts) != 1 || base.Config.Cmd[0] != "bash" {
		t.Errorf("base config changed: %+v", base.Config)
	}
}

func TestApplyConfigCmdOnlyKeepsEntrypoint(t *testing.T) {
	img := &dockerspec.DockerOCIImage{}
	img.Config.Entrypoint = []string{"tini", "--"}
	img.Config.Cmd = []string{"sh"}
	ApplyConfig(img, &descriptor.Config{Cmd: descriptor.ArgList{Set: true, Args: []string{"python3"}}, WorkingDir: "/app"})
	if !reflect.DeepEqual(img.Config.Entrypoint, []string{"tini", "--"}) || !reflect.DeepEqual(img.Config.Cmd, []string{"python3"}) || img.Config.WorkingDir != "/app" {
		t.Fatalf("config %+v", img.Config)
	}
	ApplyConfig(img, nil)
	if img.Config.Cmd[0] != "python3" {
		t.Fatal("nil config changed the image")
	}
}
