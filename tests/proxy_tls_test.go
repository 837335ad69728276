package tests

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// selfSignedCert makes an ECDSA P-256 key and a certificate for it signed
// by itself from tmpl (serial number and validity filled in).
func selfSignedCert(t *testing.T, tmpl *x509.Certificate) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(1)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

// selfSigned writes a server certificate and key for 127.0.0.1 and returns
// their paths and the certificate's PEM.
func selfSigned(t *testing.T) (certFile, keyFile string, certPEM []byte) {
	t.Helper()
	key, der := selfSignedCert(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "2dfs-proxy test"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeFile(t, certFile, certPEM)
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	return certFile, keyFile, certPEM
}

// 2dfs-proxy serves HTTPS with -tls-cert/-tls-key: a client that trusts the
// certificate gets partitions, containerd pulls and runs one, and plain
// HTTP to the TLS port gets no registry answer.
func TestProxyTLS(t *testing.T) {
	f := proxyField(t)
	certFile, keyFile, certPEM := selfSigned(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := startProc(t, "2dfs-proxy-tls", proxyBin(t), nil,
		"-listen", addr, "-upstream", "http://"+env.registry, "-store-dir", "", "-tls-cert", certFile, "-tls-key", keyFile)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	waitUntil(t, "2dfs-proxy with TLS", p, func() bool {
		resp, err := client.Get("https://" + addr + "/livez")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if resp, err := http.Get("http://" + addr + "/v2/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP to the TLS port got a registry answer")
		}
	}

	selection := "0.0.0.1--2.0.2.0"
	img, err := remote.Image(reference(t, addr+"/"+f.repo+":v1--"+selection), remote.WithTransport(transport))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(layerDigests(t, img), ","), strings.Join(f.wantLayers(t, selection), ","); got != want {
		t.Fatalf("partition over TLS has layers\n%s\nwant\n%s", got, want)
	}

	ref := addr + "/" + f.repo + ":v1--" + selection
	ctr := func(args ...string) string {
		return runCmd(t, "", "ctr", append([]string{"--address", env.ctrAddr, "--namespace", "tdfs-proxy-tls"}, args...)...)
	}
	// ctr talks plain HTTP to loopback hosts by default; a hosts.toml says
	// HTTPS, with our certificate as the CA.
	hosts := t.TempDir()
	writeFile(t, filepath.Join(hosts, addr, "hosts.toml"), []byte(fmt.Sprintf(
		"server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = %q\n",
		"https://"+addr, "https://"+addr, certFile)))
	ctr("images", "pull", "--hosts-dir", hosts, ref)
	if got := ctrRunScript(t, "tdfs-proxy-tls", ref, "tls", filesScript); got != f.wantFiles(t, selection) {
		t.Fatalf("files in the partition pulled over TLS:\n%s\nwant:\n%s", got, f.wantFiles(t, selection))
	}
}
