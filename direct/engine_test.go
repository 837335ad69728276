package direct

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"

	"github.com/tdfs-kit/tdfs/descriptor"
	"github.com/tdfs-kit/tdfs/direct/layer"
	"github.com/tdfs-kit/tdfs/llb"
)

// testField writes a context of n one-file allotments.
func testField(t *testing.T, n int) (string, *descriptor.Descriptor) {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString(`{"allotments": [`)
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		name := filepath.Join(dir, "s", string(rune('a'+i))+".bin")
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(strings.Repeat(string(rune('a'+i)), 100000)), 0o644); err != nil {
			t.Fatal(err)
		}
		b.WriteString(`{"src": "s/` + string(rune('a'+i)) + `.bin", "dst": "/m/", "row": 0, "col": ` + string(rune('0'+i)) + `}`)
	}
	b.WriteString("]}")
	desc, err := descriptor.Parse("2dfs.json", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return dir, desc
}

func options(dir string, desc *descriptor.Descriptor, cache string) Options {
	c, _ := layer.ParseCompression("zstd", 1)
	return Options{ContextDir: dir, Descriptor: desc, Epoch: llb.DefaultEpoch, Compression: c, OCI: true, Workers: 2, CacheDir: cache, Keychain: authn.NewMultiKeychain()}
}

// A registry that fails one blob upload leaves the tag unwritten: no
// manifest is put before every blob is in the repository.
func TestFailedUploadTagsNothing(t *testing.T) {
	var patches atomic.Int32
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch && patches.Add(1) == 2 {
			http.Error(w, `{"errors":[{"code":"DENIED","message":"quota exceeded"}]}`, http.StatusForbidden)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	tag, err := name.NewTag(host + "/f/field:v1")
	if err != nil {
		t.Fatal(err)
	}
	dir, desc := testField(t, 3)
	_, err = Build(context.Background(), options(dir, desc, "-"), Output{Tags: []name.Tag{tag}})
	if err == nil {
		t.Fatal("build succeeded though an upload failed")
	}
	if _, herr := remote.Head(tag); herr == nil {
		t.Fatalf("the tag exists after a failed build (%v)", err)
	}

	// With the registry healthy, the same build pushes and tags.
	res, err := Build(context.Background(), options(dir, desc, "-"), Output{Tags: []name.Tag{tag}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Head(tag)
	if err != nil || d.Digest.String() != res.Digest.String() {
		t.Fatalf("tag points at %v (%v), build made %s", d, err, res.Digest)
	}
}

// Sources changed within the racy window of the scan are not trusted from
// the stat cache: the next build reads them; older ones it does not.
func TestStatCacheRacyWindow(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	tag, _ := name.NewTag(strings.TrimPrefix(srv.URL, "http://") + "/f/racy:v1")
	dir, desc := testField(t, 2)
	cache := t.TempDir()
	// Fresh files: the first build reads them and may not cache them.
	if _, err := Build(context.Background(), options(dir, desc, cache), Output{Tags: []name.Tag{tag}}); err != nil {
		t.Fatal(err)
	}
	res, err := Build(context.Background(), options(dir, desc, cache), Output{Tags: []name.Tag{tag}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Unread != 0 {
		t.Fatalf("%d allotments trusted from a cache written within %v of their change", res.Unread, racyWindow)
	}
	time.Sleep(2 * racyWindow)
	for range 2 {
		if res, err = Build(context.Background(), options(dir, desc, cache), Output{Tags: []name.Tag{tag}}); err != nil {
			t.Fatal(err)
		}
	}
	if res.Read != 0 || res.Unread != 2 {
		t.Fatalf("aged sources: %d read, %d unread, want 0 and 2", res.Read, res.Unread)
	}
}

// Base layers stay as the base has them (and are mounted); with
// ForceCompression they are converted to the build's compression, keeping
// their diff_id, as BuildKit's force-compression converts them.
func TestBaseLayersKeptOrConverted(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	baseRef, _ := name.NewTag(host + "/base/img:v1")
	img, err := random.Image(4096, 2) // gzip layers
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	if err := remote.Write(baseRef, img); err != nil {
		t.Fatal(err)
	}
	baseLayers, _ := img.Layers()
	dir, desc := testField(t, 1)
	for _, force := range []bool{false, true} {
		opt := options(dir, desc, "-")
		opt.Base = baseRef.String()
		opt.ForceCompression = force
		tag, _ := name.NewTag(fmt.Sprintf("%s/f/base:%v", host, force))
		if _, err := Build(context.Background(), opt, Output{Tags: []name.Tag{tag}}); err != nil {
			t.Fatal(err)
		}
		got, err := remote.Image(tag)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := got.Manifest()
		cfg, _ := got.ConfigFile()
		if len(m.Layers) != 3 {
			t.Fatalf("force=%v: %d layers", force, len(m.Layers))
		}
		for i, bl := range baseLayers {
			bd, _ := bl.Digest()
			bdiff, _ := bl.DiffID()
			l := m.Layers[i]
			if cfg.RootFS.DiffIDs[i] != bdiff {
				t.Errorf("force=%v: base layer %d diff_id %s, want %s", force, i, cfg.RootFS.DiffIDs[i], bdiff)
			}
			switch {
			case !force && (l.Digest != bd || l.MediaType != types.OCILayer):
				t.Errorf("base layer %d is %s %s, want the base's %s", i, l.MediaType, l.Digest, bd)
			case force && (l.Digest == bd || l.MediaType != types.OCILayerZStd):
				t.Errorf("force: base layer %d is %s %s, want it converted to zstd", i, l.MediaType, l.Digest)
			}
			if force {
				// The converted blob is in the repository and holds the
				// base layer's tar.
				cl, err := got.LayerByDigest(l.Digest)
				if err != nil {
					t.Fatal(err)
				}
				rc, err := cl.Uncompressed()
				if err != nil {
					t.Fatal(err)
				}
				sum := digest.SHA256.Digester()
				if _, err := io.Copy(sum.Hash(), rc); err != nil {
					t.Fatal(err)
				}
				rc.Close()
				if sum.Digest().String() != bdiff.String() {
					t.Errorf("converted layer %d holds %s, not the base's tar %s", i, sum.Digest(), bdiff)
				}
			}
		}
	}
}

// An upload body gives the same bytes and digests whether net/http hands
// it the connection (WriteTo, no pipe) or reads it, and is one pass: a
// second WriteTo sends nothing more, and one after Close fails.
func TestLayerBody(t *testing.T) {
	data := strings.Repeat("layer bytes ", 1<<15)
	newLayer := func() *streamLayer {
		return &streamLayer{ctx: context.Background(), write: func(ctx context.Context, w io.Writer) (layer.Written, error) {
			for i := 0; i < len(data); i += 1000 {
				if _, err := io.WriteString(w, data[i:min(i+1000, len(data))]); err != nil {
					return layer.Written{}, err
				}
			}
			return layer.Written{Digest: digest.FromString(data), Size: int64(len(data)), DiffID: digest.FromString("diff")}, nil
		}}
	}
	for _, how := range []string{"WriteTo", "Read", "Read then WriteTo"} {
		l := newLayer()
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		var got strings.Builder
		switch how {
		case "WriteTo":
			_, err = rc.(io.WriterTo).WriteTo(&got)
		case "Read":
			_, err = io.Copy(&got, readerOnly{rc})
		default:
			buf := make([]byte, 10)
			n, _ := io.ReadFull(rc, buf)
			got.Write(buf[:n])
			_, err = rc.(io.WriterTo).WriteTo(&got)
		}
		if err != nil || got.String() != data {
			t.Fatalf("%s: %d bytes, %v; want %d bytes", how, got.Len(), err, len(data))
		}
		if d, err := l.Digest(); err != nil || d.String() != digest.FromString(data).String() {
			t.Fatalf("%s: digest %v, %v", how, d, err)
		}
		if n, _ := rc.(io.WriterTo).WriteTo(io.Discard); n != 0 {
			t.Fatalf("%s: a second WriteTo sent %d bytes", how, n)
		}
		rc.Close()
	}
	rc, _ := newLayer().Compressed()
	rc.Close()
	if _, err := rc.(io.WriterTo).WriteTo(io.Discard); err == nil {
		t.Fatal("WriteTo after Close succeeded")
	}
}
