package tests

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tdfs-kit/tdfs/field"
	"github.com/tdfs-kit/tdfs/tests/testenv"
)

// fileServer is an HTTPS file server on loopback: files under /private/
// need Basic credentials, files under /public/ do not. It counts the GETs
// of each path, so a test sees what buildkitd fetched.
type fileServer struct {
	url    string
	caFile string
	user   string
	pass   string

	mu    sync.Mutex
	files map[string][]byte
	gets  map[string]int
}

func startFileServer(t *testing.T) *fileServer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tdfs test file server"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	fsrv := &fileServer{
		caFile: filepath.Join(t.TempDir(), "ca.pem"),
		user:   "hub",
		pass:   "s3cret-pw",
		files:  map[string][]byte{},
		gets:   map[string]int{},
	}
	writeFile(t, fsrv.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(fsrv.serve))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	fsrv.url = srv.URL
	return fsrv
}

func (s *fileServer) serve(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/private/") {
		if u, p, ok := r.BasicAuth(); !ok || u != s.user || p != s.pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="files"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
	}
	s.mu.Lock()
	data, ok := s.files[r.URL.Path]
	if r.Method == http.MethodGet {
		s.gets[r.URL.Path]++
	}
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Write(data)
}

func (s *fileServer) put(path string, data []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[path] = data
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func (s *fileServer) getCount(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets[path]
}

// buildkitdTrusting starts one more buildkitd that trusts the file server's
// certificate (Go reads SSL_CERT_FILE for its system roots, and BuildKit's
// HTTP source uses them).
func buildkitdTrusting(t *testing.T, name, caFile string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(env.root, "hack/daemons"), "buildkitd", env.dir, name)
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+caFile)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("start buildkitd %s: %v\n%s", name, err, testenv.ExitStderr(err))
	}
	return strings.TrimSpace(string(out))
}

// remoteField sets up a field that mixes the four kinds of sources: a file
// in the build context, two URLs (one private, behind Basic auth and a
// signed query, one public), a path in an image in the registry, and a
// folder in a named build context.
type remoteField struct {
	files      *fileServer
	addr       string
	dir        string // build context
	weights    string // the named context "weights"
	image      string // the image read with "from"
	secretFile string
	auth       string // the Authorization header value
}

const signedQuery = "X-Signature=SIGNEDQUERY42"

func setupRemoteField(t *testing.T) *remoteField {
	t.Helper()
	rf := &remoteField{files: startFileServer(t), dir: t.TempDir(), weights: t.TempDir()}
	rf.addr = buildkitdTrusting(t, "buildkitd-remote-"+strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), rf.files.caFile)

	// The image holding /opt/w.bin, made with our own build.
	imgDir := t.TempDir()
	writeFile(t, filepath.Join(imgDir, "w.bin"), []byte("weights in an image\n"))
	writeFile(t, filepath.Join(imgDir, "2dfs.json"), []byte(`{"allotments": [{"src": "w.bin", "dst": "/opt/w.bin", "row": 0, "col": 0}]}`))
	rf.image = env.registry + "/remote-src/weights:v1"
	build(t, env.buildkit, imgDir, "-t", rf.image, "--push")

	writeFile(t, filepath.Join(rf.weights, "ckpt/a.pt"), []byte("checkpoint a\n"))
	writeFile(t, filepath.Join(rf.weights, "ckpt/b.pt"), []byte("checkpoint b\n"))
	writeFile(t, filepath.Join(rf.weights, "unused.bin"), bytes.Repeat([]byte("u"), 1<<20))
	writeFile(t, filepath.Join(rf.dir, "local.bin"), []byte("a local file\n"))

	rf.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(rf.files.user+":"+rf.files.pass))
	rf.secretFile = filepath.Join(t.TempDir(), "hub-token")
	writeFile(t, rf.secretFile, []byte(rf.auth))
	return rf
}

// descriptor writes the field's descriptor: l1 is private, l2 public.
func (rf *remoteField) descriptor(t *testing.T, l1Sum, l2URL, l2Sum string) {
	t.Helper()
	writeFile(t, filepath.Join(rf.dir, "2dfs.json"), []byte(fmt.Sprintf(`{"allotments": [
  {"src": "local.bin", "dst": "/f/local.bin", "row": 0, "col": 0},
  {"src": "%s/private/l1.bin?%s", "checksum": "%s", "authSecret": "hub-token", "dst": "/f/l1.bin", "row": 1, "col": 0},
  {"src": "%s", "checksum": "%s", "dst": "/f/", "row": 1, "col": 1},
  {"src": "/opt/w.bin", "from": "%s", "dst": "/f/image.bin", "row": 2, "col": 0},
  {"src": "ckpt", "from": "weights", "dst": "/f/ckpt", "row": 3, "col": 0}
]}`, rf.files.url, signedQuery, l1Sum, l2URL, l2Sum, rf.image)))
}

func (rf *remoteField) build(t *testing.T, args ...string) string {
	t.Helper()
	return build(t, rf.addr, rf.dir, append([]string{"--secret", "id=hub-token,src=" + rf.secretFile, "--build-context", "weights=" + rf.weights}, args...)...)
}

func (rf *remoteField) buildFails(t *testing.T, args ...string) string {
	t.Helper()
	return buildFails(t, rf.addr, rf.dir, append([]string{"--build-context", "weights=" + rf.weights}, args...)...)
}

// checkNoCredentials fails when text holds the password, the header value or
// the signed query.
func (rf *remoteField) checkNoCredentials(t *testing.T, what string, text []byte) {
	t.Helper()
	for _, secret := range []string{rf.files.pass, rf.auth, strings.TrimPrefix(rf.auth, "Basic "), "SIGNEDQUERY42"} {
		if bytes.Contains(text, []byte(secret)) {
			t.Errorf("%s holds the credential %q", what, secret)
		}
	}
}

// A field mixing the four kinds of sources builds; every allotment is one
// layer with fixed times, owner and modes; no credential is in any layer,
// the config, the record or the progress output; a re-build after one URL's
// content and checksum change fetches that URL alone and rebuilds that
// allotment alone.
func TestRemoteSourcesMixedField(t *testing.T) {
	rf := setupRemoteField(t)
	l1Sum := rf.files.put("/private/l1.bin", []byte("private layer one\n"))
	l2Sum := rf.files.put("/public/l2.bin", []byte("public layer two\n"))
	rf.descriptor(t, l1Sum, rf.files.url+"/public/l2.bin", l2Sum)
	ref := env.registry + "/remote/mixed:v1"
	out := rf.build(t, "-t", ref, "--push")
	rf.checkNoCredentials(t, "the progress output", []byte(out))
	// Only the paths the allotments read go over the named context's
	// transfer: not the 1 MiB unused.bin beside them.
	sent := regexp.MustCompile(`transferring context-weights: ([0-9.]+)([kMG]?B)`).FindAllStringSubmatch(out, -1)
	if len(sent) == 0 {
		t.Errorf("progress shows no transfer of the named context:\n%s", out)
	}
	for _, m := range sent {
		if m[2] != "B" && m[2] != "kB" {
			t.Errorf("the named context sent %s%s, more than the files read from it", m[1], m[2])
		}
	}

	img := pull(t, ref)
	want := map[field.Cell]map[string]string{
		{Row: 0, Col: 0}: {"/f/local.bin": "a local file\n"},
		{Row: 1, Col: 0}: {"/f/l1.bin": "private layer one\n"},
		{Row: 1, Col: 1}: {"/f/l2.bin": "public layer two\n"},
		{Row: 2, Col: 0}: {"/f/image.bin": "weights in an image\n"},
		{Row: 3, Col: 0}: {"/f/ckpt/a.pt": "checkpoint a\n", "/f/ckpt/b.pt": "checkpoint b\n"},
	}
	if len(img.record.Allotments) != len(want) || img.record.BaseLayers != 0 {
		t.Fatalf("record = %+v", img.record)
	}
	for _, a := range img.record.Allotments {
		entries, _ := readLayer(t, img.raw, a.Layer)
		for p, data := range want[a.Cell()] {
			e, ok := entries[p]
			if !ok {
				t.Errorf("allotment %s: no %s in its layer (has %v)", a.Cell(), p, keys(entries))
				continue
			}
			if string(e.data) != data || e.hdr.Mode&0o777 != 0o644 || e.hdr.Uid != 0 || e.hdr.Gid != 0 || !e.hdr.ModTime.Equal(time.Unix(0, 0)) {
				t.Errorf("allotment %s: %s = %q mode %o owner %d:%d time %v", a.Cell(), p, e.data, e.hdr.Mode, e.hdr.Uid, e.hdr.Gid, e.hdr.ModTime)
			}
		}
		if _, ok := entries["/f/unused.bin"]; ok {
			t.Errorf("allotment %s holds a file it does not name", a.Cell())
		}
	}

	// The secret is in no layer, nor in the config or the manifest.
	layers, err := img.raw.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		rf.checkNoCredentials(t, fmt.Sprintf("layer %d", i), data)
	}
	cfg, _ := img.raw.RawConfigFile()
	rf.checkNoCredentials(t, "the config", cfg)
	man, _ := img.raw.RawManifest()
	rf.checkNoCredentials(t, "the manifest", man)
	// The history names the URL without its query.
	if !bytes.Contains(cfg, []byte(`2dfs `+rf.files.url+`/private/l1.bin -\u003e /f/l1.bin`)) && !bytes.Contains(cfg, []byte(`2dfs `+rf.files.url+`/private/l1.bin -> /f/l1.bin`)) {
		t.Errorf("the history does not name the redacted URL:\n%s", cfg)
	}
	if got := rf.files.getCount("/private/l1.bin") + rf.files.getCount("/public/l2.bin"); got != 2 {
		t.Errorf("buildkitd fetched the URLs %d times, want 2 (one each)", got)
	}

	// One URL's content and checksum change: only it is fetched again, and
	// only its allotment is rebuilt.
	l2Sum = rf.files.put("/public/l2.bin", []byte("public layer two, version 2\n"))
	rf.descriptor(t, l1Sum, rf.files.url+"/public/l2.bin", l2Sum)
	out = rf.build(t, "-t", ref+"-2", "--push")
	if n := rf.files.getCount("/private/l1.bin"); n != 1 {
		t.Errorf("the unchanged URL was fetched %d times in all, want 1", n)
	}
	if n := rf.files.getCount("/public/l2.bin"); n != 2 {
		t.Errorf("the changed URL was fetched %d times in all, want 2", n)
	}
	cached := allotmentVertices(t, out, 5)
	for _, cell := range []string{"0,0", "1,0", "2,0", "3,0"} {
		if !cached[cell] {
			t.Errorf("allotment %s was rebuilt though its source did not change:\n%s", cell, out)
		}
	}
	if cached["1,1"] {
		t.Errorf("allotment 1,1 came from cache after its URL's content changed")
	}
	before, after := img.allotmentLayers(), pull(t, ref+"-2").allotmentLayers()
	for cell, l := range before {
		if changed := after[cell] != l; changed != (cell == field.Cell{Row: 1, Col: 1}) {
			t.Errorf("allotment %s: layer %s -> %s", cell, l, after[cell])
		}
	}
}

func keys(m map[string]tarEntry) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// A wrong checksum, a 404, missing and wrong credentials each fail the
// build with an error that names the allotment, the URL without its
// credentials and what came back.
func TestRemoteSourceErrors(t *testing.T) {
	rf := setupRemoteField(t)
	l2Sum := rf.files.put("/public/l2.bin", []byte("public layer two\n"))
	wrong := rf.files.put("/public/other.bin", []byte("something else\n"))
	// A checksum buildkitd has never seen: a URL pinned by a known one
	// comes from the cache, whatever the server answers now.
	unseen := rf.files.put("/public/unseen.bin", []byte("never fetched\n"))
	badSecret := filepath.Join(t.TempDir(), "bad")
	writeFile(t, badSecret, []byte("Basic "+base64.StdEncoding.EncodeToString([]byte("hub:wrong"))))
	u := rf.files.url

	for _, tc := range []struct {
		name   string
		l2URL  string
		l2Sum  string
		secret string
		want   string
	}{
		{"wrong checksum", u + "/public/l2.bin?" + signedQuery, wrong, rf.secretFile,
			fmt.Sprintf(`2dfs.json:4:11: allotments[2] (row 1, col 1): src[0] "%s/public/l2.bin": the server sent a file with digest %s, but the checksum pins %s (the file changed, or the checksum is wrong)`, u, l2Sum, wrong)},
		{"404", u + "/public/gone.bin?" + signedQuery, unseen, rf.secretFile,
			fmt.Sprintf(`2dfs.json:4:11: allotments[2] (row 1, col 1): src[0] "%s/public/gone.bin": the server answered 404 Not Found`, u)},
		{"missing credentials", u + "/public/l2.bin", l2Sum, "",
			fmt.Sprintf(`2dfs.json:3:11: allotments[1] (row 1, col 0): src[0] "%s/private/l1.bin": the secret "hub-token" named by authSecret was not given to the build; pass it with --secret id=hub-token,src=FILE (a file holding the whole Authorization header value)`, u)},
		{"wrong credentials", u + "/public/l2.bin", l2Sum, badSecret,
			fmt.Sprintf(`2dfs.json:3:11: allotments[1] (row 1, col 0): src[0] "%s/private/l1.bin": the server answered 401 Unauthorized; check the credentials in the secret named by authSecret (the whole Authorization header value, e.g. "Basic …" or "Bearer …")`, u)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// New private content each time: a URL pinned by a checksum
			// BuildKit has seen comes from its cache, credentials or not.
			l1Sum := rf.files.put("/private/l1.bin", []byte("private layer one for "+tc.name+"\n"))
			rf.descriptor(t, l1Sum, tc.l2URL, tc.l2Sum)
			args := []string{}
			if tc.secret != "" {
				args = append(args, "--secret", "id=hub-token,src="+tc.secret)
			}
			out := rf.buildFails(t, args...)
			if !strings.Contains(out, tc.want) {
				t.Errorf("output does not say\n%s\n%s", tc.want, out)
			}
			rf.checkNoCredentials(t, "the output", []byte(out))
		})
	}
}

// A cold build on a second buildkitd takes every allotment from a registry
// cache: no URL is fetched again. The cache holds no credential.
func TestRemoteSourcesRegistryCache(t *testing.T) {
	rf := setupRemoteField(t)
	l1Sum := rf.files.put("/private/l1.bin", []byte("private, cached\n"))
	l2Sum := rf.files.put("/public/l2.bin", []byte("public, cached\n"))
	rf.descriptor(t, l1Sum, rf.files.url+"/public/l2.bin?"+signedQuery, l2Sum)
	cache := "type=registry,ref=" + env.registry + "/remote/cache:v1"
	ref := env.registry + "/remote/cached"
	rf.build(t, "-t", ref+":v1", "--push", "--cache-to", cache+",mode=max")
	fetched := rf.files.getCount("/private/l1.bin") + rf.files.getCount("/public/l2.bin")
	if fetched != 2 {
		t.Fatalf("first build fetched %d times, want 2", fetched)
	}

	rf.addr = buildkitdTrusting(t, "buildkitd-remote-cold", rf.files.caFile)
	out := rf.build(t, "-t", ref+":v2", "--push", "--cache-from", cache)
	if n := rf.files.getCount("/private/l1.bin") + rf.files.getCount("/public/l2.bin"); n != fetched {
		t.Errorf("the cold build fetched the URLs %d more times, want none:\n%s", n-fetched, out)
	}
	vertices := allotmentVertices(t, out, 5)
	for cell, cached := range vertices {
		if !cached {
			t.Errorf("allotment %s was rebuilt on the cold builder:\n%s", cell, out)
		}
	}
	first, second := pull(t, ref+":v1"), pull(t, ref+":v2")
	if first.digest != second.digest {
		t.Errorf("the cold build gave manifest %s, the first %s", second.digest, first.digest)
	}

	// No blob in the registry (images, cache manifests and cache configs)
	// holds the credentials or the signed query.
	paths, err := filepath.Glob(filepath.Join(env.dir, "registry-data/docker/registry/v2/blobs/sha256/*/*/data"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no registry blobs found: %v", err)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		rf.checkNoCredentials(t, "registry blob "+filepath.Base(filepath.Dir(p)), data)
	}
}

// In a multi-platform build, "from" reads an image for each target
// platform, as COPY --from does: each platform's allotment holds that
// platform's file.
func TestRemoteSourcesFromImagePerPlatform(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "amd64.txt"), []byte("amd64\n"))
	writeFile(t, filepath.Join(src, "arm64.txt"), []byte("arm64\n"))
	writeFile(t, filepath.Join(src, "Dockerfile"), []byte("FROM scratch\nARG TARGETARCH\nCOPY ${TARGETARCH}.txt /arch.txt\n"))
	image := env.registry + "/remote-src/per-arch:v1"
	runCmd(t, src, filepath.Join(env.tools, "buildctl"), "--addr", env.buildkit, "build", "--progress", "quiet",
		"--frontend", "dockerfile.v0", "--local", "context="+src, "--local", "dockerfile="+src,
		"--opt", "platform=linux/amd64,linux/arm64", "--output", "type=image,name="+image+",push=true")

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "2dfs.json"), []byte(`{"allotments": [
  {"src": "/arch.txt", "from": "`+image+`", "dst": "/f/arch.txt", "row": 0, "col": 0}
]}`))
	writeFile(t, filepath.Join(dir, "big.bin"), bytes.Repeat([]byte("b"), 4<<20))
	ref := env.registry + "/remote/per-arch:v1"
	out := build(t, env.buildkit, dir, "--platform", "linux/amd64,linux/arm64", "-t", ref, "--push")
	// No source is in the build context, so none of it is transferred.
	if strings.Contains(out, "load build context") {
		t.Errorf("the build context was loaded though no allotment reads it:\n%s", out)
	}
	byArch := platformImages(t, ref)
	if len(byArch) != 2 {
		t.Fatalf("got platforms %v", byArch)
	}
	for arch, img := range byArch {
		entries, _ := readLayer(t, img.raw, img.record.Allotments[0].Layer)
		if got := string(entries["/f/arch.txt"].data); got != arch+"\n" {
			t.Errorf("the %s image's allotment holds %q, want %q", arch, got, arch+"\n")
		}
	}
}

// Through docker buildx and the frontend image, remote sources build the
// same way, --secret reaches the HTTP source, and a failed fetch is
// explained by the frontend (the gateway container's error wins).
func TestRemoteSourcesBuildx(t *testing.T) {
	frontend := frontendImage(t)
	rf := setupRemoteField(t)
	docker(t, rf.dir, "buildx", "create", "--name", "remote-sources", "--driver", "remote", rf.addr)
	l1Sum := rf.files.put("/private/l1.bin", []byte("private, through buildx\n"))
	l2Sum := rf.files.put("/public/l2.bin", []byte("public, through buildx\n"))
	args := func(ref string) []string {
		return []string{"buildx", "build", "--builder", "remote-sources", "--progress", "plain", "-f", "2dfs.json",
			"--provenance=false", "--sbom=false", "--secret", "id=hub-token,src=" + rf.secretFile,
			"--build-context", "weights=" + rf.weights, "--output", "type=image,name=" + ref + ",push=true", "."}
	}

	rf.descriptor(t, l1Sum, rf.files.url+"/public/l2.bin?"+signedQuery, l2Sum)
	withDescriptor(t, rf.dir, map[string]any{"syntax": frontend})
	ref := env.registry + "/remote/buildx:v1"
	out := docker(t, rf.dir, args(ref)...)
	rf.checkNoCredentials(t, "buildx's progress output", []byte(out))
	img := pull(t, ref)
	if len(img.record.Allotments) != 5 {
		t.Fatalf("record = %+v", img.record)
	}
	for _, a := range img.record.Allotments {
		if a.Cell() == (field.Cell{Row: 1, Col: 0}) {
			entries, _ := readLayer(t, img.raw, a.Layer)
			if got := string(entries["/f/l1.bin"].data); got != "private, through buildx\n" {
				t.Errorf("/f/l1.bin = %q", got)
			}
		}
	}

	wrong := rf.files.put("/public/other.bin", []byte("not l2, through buildx\n"))
	rf.descriptor(t, l1Sum, rf.files.url+"/public/l2.bin?"+signedQuery, wrong)
	withDescriptor(t, rf.dir, map[string]any{"syntax": frontend})
	out, err := tryDocker(rf.dir, nil, args(ref+"-wrong")...)
	if err == nil {
		t.Fatalf("build with a wrong checksum succeeded:\n%s", out)
	}
	want := fmt.Sprintf(`allotments[2] (row 1, col 1): src[0] "%s/public/l2.bin": the server sent a file with digest %s, but the checksum pins %s`, rf.files.url, l2Sum, wrong)
	if !strings.Contains(out, want) {
		t.Errorf("output does not say\n%s\n%s", want, out)
	}
	rf.checkNoCredentials(t, "buildx's output of the failed build", []byte(out))
}
