package tests

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// tokenServer is a small Docker registry token service: it checks Basic
// credentials (GET) or an OAuth password grant (POST), and issues ES256
// JWTs with the x5c header of a certificate the registry trusts
// (auth.token.rootcertbundle).
type tokenServer struct {
	url      string
	certPath string
	key      *ecdsa.PrivateKey
	certDER  []byte
	users    map[string]string              // user -> password
	grants   map[string]map[string][]string // user -> repository -> actions
}

const (
	tokenService = "tdfs-test-registry"
	tokenIssuer  = "tdfs-test-issuer"
)

func startTokenServer(t *testing.T) *tokenServer {
	t.Helper()
	key, der := selfSignedCert(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "tdfs test token signer"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	})
	ts := &tokenServer{
		certPath: filepath.Join(t.TempDir(), "token-signer.pem"),
		key:      key,
		certDER:  der,
		users:    map[string]string{"alice": "alice-pw", "bob": "bob-pw"},
		grants: map[string]map[string][]string{
			"alice": {"proxy/field": {"pull", "push"}},
			"bob":   {"bob/own": {"pull", "push"}},
		},
	}
	writeFile(t, ts.certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(ts.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	// A host name, not an IP literal: go-containerregistry (crane)
	// refuses token realms at private IP literals.
	ts.url = fmt.Sprintf("http://localhost:%d/token", l.Addr().(*net.TCPAddr).Port)
	return ts
}

func (ts *tokenServer) serve(w http.ResponseWriter, r *http.Request) {
	var user, pass string
	var scopes []string
	switch r.Method {
	case http.MethodGet:
		var ok bool
		if user, pass, ok = r.BasicAuth(); !ok {
			user = "" // anonymous: a token with no access
		}
		scopes = r.URL.Query()["scope"]
	case http.MethodPost: // containerd's OAuth password grant
		if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "password" {
			http.Error(w, "unsupported grant", http.StatusBadRequest)
			return
		}
		user, pass = r.PostForm.Get("username"), r.PostForm.Get("password")
		scopes = strings.Fields(r.PostForm.Get("scope"))
	default:
		http.Error(w, "method", http.StatusMethodNotAllowed)
		return
	}
	if user != "" && ts.users[user] != pass {
		w.Header().Set("WWW-Authenticate", `Basic realm="tdfs-test"`)
		http.Error(w, `{"details":"wrong credentials"}`, http.StatusUnauthorized)
		return
	}
	var access []map[string]any
	for _, s := range scopes {
		for _, one := range strings.Fields(s) {
			parts := strings.Split(one, ":")
			if len(parts) != 3 || parts[0] != "repository" {
				continue
			}
			var granted []string
			for _, a := range strings.Split(parts[2], ",") {
				if slices.Contains(ts.grants[user][parts[1]], a) {
					granted = append(granted, a)
				}
			}
			if granted == nil {
				granted = []string{}
			}
			access = append(access, map[string]any{"type": "repository", "name": parts[1], "actions": granted})
		}
	}
	tok := ts.sign(user, access)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"token": tok, "access_token": tok, "expires_in": 300, "issued_at": time.Now().UTC().Format(time.RFC3339)})
}

// sign makes an ES256 JWT for the registry.
func (ts *tokenServer) sign(user string, access []map[string]any) string {
	enc := base64.RawURLEncoding
	header, _ := json.Marshal(map[string]any{"alg": "ES256", "typ": "JWT", "x5c": []string{base64.StdEncoding.EncodeToString(ts.certDER)}})
	now := time.Now().Unix()
	jti := make([]byte, 8)
	_, _ = rand.Read(jti)
	if access == nil {
		access = []map[string]any{}
	}
	claims, _ := json.Marshal(map[string]any{
		"iss": tokenIssuer, "sub": user, "aud": tokenService,
		"exp": now + 300, "nbf": now - 10, "iat": now, "jti": fmt.Sprintf("%x", jti),
		"access": access,
	})
	input := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	h := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, ts.key, h[:])
	if err != nil {
		panic(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + enc.EncodeToString(sig)
}

// token asks the token server directly, as a client would.
func (ts *tokenServer) token(t *testing.T, user, pass, scope string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, ts.url+"?service="+tokenService+"&scope="+scope, nil)
	req.SetBasicAuth(user, pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Token string }
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&body) != nil {
		t.Fatalf("token for %s: %s", user, resp.Status)
	}
	return body.Token
}

// TestProxyAuth runs the proxy in front of registries that need
// credentials: htpasswd (Basic) and bearer tokens from a token service.
// Authorized clients (crane, ctr) get partitions; clients without
// credentials, with wrong ones, or with a token for other repositories get
// 401 and no partition bytes, also by digest after an authorized client had
// the proxy build the partition.
func TestProxyAuth(t *testing.T) {
	f := proxyField(t)

	t.Run("htpasswd", func(t *testing.T) {
		hash, err := bcrypt.GenerateFromPassword([]byte("alice-pw"), bcrypt.MinCost) // the registry checks it on every request
		if err != nil {
			t.Fatal(err)
		}
		htpasswd := filepath.Join(t.TempDir(), "htpasswd")
		writeFile(t, htpasswd, []byte("alice:"+string(hash)+"\n"))
		reg := startRegistry(t, "htpasswd", fmt.Sprintf("auth:\n  htpasswd:\n    realm: tdfs-test\n    path: %s\n", htpasswd))
		basic := func(user, pass string) map[string]string {
			return map[string]string{"Authorization": "Basic " + b64(user+":"+pass)}
		}
		testAuth(t, f, reg, authCase{
			user: "alice", pass: "alice-pw",
			good: basic("alice", "alice-pw"),
			bad: map[string]map[string]string{
				"no credentials":  nil,
				"wrong password":  basic("alice", "nope"),
				"unknown user":    basic("mallory", "alice-pw"),
				"a bearer header": {"Authorization": "Bearer not-a-token"},
			},
			challenge: "Basic",
		})
	})

	t.Run("token", func(t *testing.T) {
		ts := startTokenServer(t)
		reg := startRegistry(t, "token", fmt.Sprintf("auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n",
			ts.url, tokenService, tokenIssuer, ts.certPath))
		bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
		scope := "repository:proxy/field:pull"
		// A token signed by another key, with all the right claims.
		forger := startTokenServer(t)
		testAuth(t, f, reg, authCase{
			user: "alice", pass: "alice-pw",
			good: bearer(ts.token(t, "alice", "alice-pw", scope)),
			bad: map[string]map[string]string{
				"no credentials":             nil,
				"bob's token (other repos)":  bearer(ts.token(t, "bob", "bob-pw", scope)),
				"anonymous token":            bearer(ts.token(t, "", "", scope)),
				"token of an untrusted key":  bearer(forger.token(t, "alice", "alice-pw", scope)),
				"alice's password as Basic":  {"Authorization": "Basic " + b64("alice:alice-pw")},
				"a token for another scope":  bearer(ts.token(t, "alice", "alice-pw", "repository:other/repo:pull")),
				"a truncated token of alice": bearer(ts.token(t, "alice", "alice-pw", scope)[:40]),
			},
			challenge: `Bearer realm="` + ts.url + `"`,
			otherUser: []string{"bob", "bob-pw"},
		})
	})
}

type authCase struct {
	user, pass string
	good       map[string]string            // request headers of an authorized client
	bad        map[string]map[string]string // request headers of clients that must get 401
	challenge  string                       // start of the registry's WWW-Authenticate
	otherUser  []string                     // a user who logs in but may not read proxy/field
}

func testAuth(t *testing.T, f *fieldFixture, reg *registryProc, c authCase) {
	// Put the field into the registry, with credentials.
	regCfg := dockerConfig(t, map[string]string{reg.addr: c.user + ":" + c.pass})
	crane(t, regCfg, "copy", f.ref, reg.addr+"/"+f.repo+":v1")
	if _, err := tryCrane(dockerConfig(t, nil), "digest", reg.addr+"/"+f.repo+":v1"); err == nil {
		t.Fatal("the registry serves the image without credentials: the test would prove nothing")
	}

	px := startProxy(t, reg.addr)
	const selection = "0.1.1.1" // (0,1) and (1,1)
	ref := px.addr + "/" + f.repo + ":v1--" + selection
	base := "http://" + px.addr + "/v2/" + f.repo

	// Clients without access, before anyone built the partition.
	for what, hdr := range c.bad {
		st, h, body := regGet(t, http.MethodGet, base+"/manifests/v1--"+selection, hdr)
		checkDenied(t, "tag, "+what, st, h, body, c.challenge)
	}

	// Authorized: crane with credentials for the proxy's address.
	pxCfg := dockerConfig(t, map[string]string{px.addr: c.user + ":" + c.pass})
	d := crane(t, pxCfg, "digest", ref)
	manifest := crane(t, pxCfg, "manifest", ref)
	cfgDigest, ls := manifestLayers(t, []byte(manifest))
	if !slices.Equal(ls, f.wantLayers(t, selection)) {
		t.Fatalf("authorized crane: layers %v, want %v", ls, f.wantLayers(t, selection))
	}
	tarball := filepath.Join(t.TempDir(), "part.tar")
	crane(t, pxCfg, "pull", ref, tarball) // layer blobs pass through with the credentials
	// Authorized: containerd with a user and password, then running it.
	out, ctrDigest := ctrPullRun(t, ref, filesScript, "--user", c.user+":"+c.pass)
	if out != f.wantFiles(t, selection) {
		t.Fatalf("files in the container:\n%s\nwant:\n%s", out, f.wantFiles(t, selection))
	}
	if ctrDigest != d {
		t.Fatalf("ctr got %s, crane %s", ctrDigest, d)
	}
	// The same as a containerd mirror (hosts.toml), the image named by the
	// registry: containerd answers the relayed challenge with its own
	// credentials.
	mref := reg.addr + "/" + f.repo + ":v1--0.0.0.0"
	out, _ = ctrPullRun(t, mref, filesScript, "--hosts-dir", hostsDir(t, reg.addr, px.addr), "--user", c.user+":"+c.pass)
	if out != f.wantFiles(t, "0.0.0.0") {
		t.Fatalf("files through the mirror with ctr's credentials:\n%s\nwant:\n%s", out, f.wantFiles(t, "0.0.0.0"))
	}
	// Authorized raw requests, by tag and by digest.
	for _, u := range []string{base + "/manifests/v1--" + selection, base + "/manifests/" + d} {
		st, _, body := regGet(t, http.MethodGet, u, c.good)
		if st != 200 || sha256Digest(body) != d {
			t.Fatalf("authorized GET %s: %d %s", u, st, body)
		}
	}
	if st, _, body := regGet(t, http.MethodGet, base+"/blobs/"+cfgDigest, c.good); st != 200 || sha256Digest(body) != cfgDigest {
		t.Fatalf("authorized GET of the partition config: %d", st)
	}

	// Without access, after the partition was built: neither the tag nor
	// the stored manifest and config by digest, nor a layer.
	for what, hdr := range c.bad {
		for _, u := range []string{
			base + "/manifests/v1--" + selection,
			base + "/manifests/" + d,
			base + "/blobs/" + cfgDigest,
			base + "/blobs/" + ls[len(ls)-1],
		} {
			for _, m := range []string{http.MethodGet, http.MethodHead} {
				st, h, body := regGet(t, m, u, hdr)
				checkDenied(t, m+" "+u+", "+what, st, h, body, c.challenge)
			}
		}
	}
	// Real clients without credentials fail too.
	if out, err := tryCrane(dockerConfig(t, nil), "manifest", ref); err == nil || strings.Contains(out, `"layers"`) {
		t.Fatalf("crane without credentials got the partition:\n%s", out)
	}
	if out, err := tryCrane(dockerConfig(t, map[string]string{px.addr: c.user + ":wrong"}), "manifest", px.addr+"/"+f.repo+"@"+d); err == nil || strings.Contains(out, `"layers"`) {
		t.Fatalf("crane with a wrong password got the partition by digest:\n%s", out)
	}
	if c.otherUser != nil {
		// A user who can log in but not read this repository.
		if out, err := tryCrane(dockerConfig(t, map[string]string{px.addr: c.otherUser[0] + ":" + c.otherUser[1]}), "manifest", px.addr+"/"+f.repo+"@"+d); err == nil || strings.Contains(out, `"layers"`) {
			t.Fatalf("%s got the partition by digest:\n%s", c.otherUser[0], out)
		}
	}
	if out, err := tryCmd("", "ctr", "--address", env.ctrAddr, "--namespace", "tdfs-proxy-tests-anon", "images", "pull", "--plain-http", px.addr+"/"+f.repo+":v1--0.0.0.0"); err == nil {
		t.Fatalf("ctr without credentials pulled a partition:\n%s", out)
	}

	// A proxy with -upstream-credentials reads for clients that bring
	// none (Basic, or the token flow on the registry's Bearer challenge).
	credsFile := filepath.Join(t.TempDir(), "creds.json")
	data, _ := json.Marshal(map[string]any{reg.addr: map[string]string{"username": c.user, "password": c.pass}})
	writeFile(t, credsFile, data)
	withCreds := startProxy(t, reg.addr, "-upstream-credentials", credsFile, "-read-only")
	if got := crane(t, dockerConfig(t, nil), "digest", withCreds.addr+"/"+f.repo+":v1--"+selection); got != d {
		t.Fatalf("anonymous client through -upstream-credentials: %s, want %s", got, d)
	}
	fetchByDigest(t, withCreds, f.repo, d)
	// A client's own (bad) credentials are used as they are, not replaced.
	for what, hdr := range c.bad {
		if hdr == nil {
			continue
		}
		st, h, body := regGet(t, http.MethodGet, "http://"+withCreds.addr+"/v2/"+f.repo+"/manifests/v1--"+selection, hdr)
		checkDenied(t, "-upstream-credentials proxy, "+what, st, h, body, c.challenge)
	}
}

// checkDenied wants a 401 with the registry's challenge and nothing of the
// partition in the answer.
func checkDenied(t *testing.T, what string, status int, h http.Header, body []byte, challenge string) {
	t.Helper()
	if status != http.StatusUnauthorized {
		t.Fatalf("%s: status %d, want 401: %s", what, status, body)
	}
	if !strings.HasPrefix(h.Get("WWW-Authenticate"), challenge) {
		t.Fatalf("%s: WWW-Authenticate %q, want the registry's %q...", what, h.Get("WWW-Authenticate"), challenge)
	}
	if h.Get("Docker-Content-Digest") != "" || strings.Contains(string(body), "layers") || strings.Contains(string(body), "org.2dfs") {
		t.Fatalf("%s: a denied answer carries partition data: %v %s", what, h, body)
	}
}
