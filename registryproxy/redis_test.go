package registryproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startRedis runs a real redis-server (Debian's redis-server, installed by
// hack/tools.sh) on a free loopback port with no persistence, and returns
// its address. It is stopped when the test ends.
func startRedis(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is not installed (hack/tools.sh installs it)")
		}
		t.Skip("redis-server is not installed; hack/tools.sh installs it")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	cmd := exec.Command(bin, append([]string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--protected-mode", "no"}, args...)...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		if i == 100 {
			t.Fatalf("redis-server did not start: %v\n%s", err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRedisStore(t *testing.T) {
	ctx := context.Background()
	addr := startRedis(t)
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	s := NewRedisStore(client, RedisOptions{Prefix: "t:"})

	o := obj("manifest bytes")
	if _, err := s.Get(ctx, o.Digest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty store: %v", err)
	}
	if err := s.Put(ctx, o); err != nil {
		t.Fatal(err)
	}
	// Another replica (its own client) reads what this one wrote.
	other := NewRedisStore(redis.NewClient(&redis.Options{Addr: addr}), RedisOptions{Prefix: "t:"})
	got, err := other.Get(ctx, o.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Data) != "manifest bytes" || got.MediaType != o.MediaType || got.Source != o.Source || !got.Manifest {
		t.Fatalf("got %+v, want %+v", got, o)
	}
	cfg := obj("config")
	cfg.Manifest = false
	if err := s.Put(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if got, err := other.Get(ctx, cfg.Digest); err != nil || got.Manifest {
		t.Fatalf("config read back as %+v, %v", got, err)
	}

	// The key layout is what the docs say, and there is no TTL by default.
	if n, err := client.Exists(ctx, "t:"+o.Digest.String()).Result(); err != nil || n != 1 {
		t.Fatalf("key t:%s: exists=%d, %v", o.Digest, n, err)
	}
	if ttl, err := client.TTL(ctx, "t:"+o.Digest.String()).Result(); err != nil || ttl != -1 {
		t.Fatalf("TTL = %v, %v; want none", ttl, err)
	}

	// Damaged data is a miss, never wrong bytes; a Put repairs it.
	if err := client.HSet(ctx, "t:"+o.Digest.String(), "data", "tampered").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, o.Digest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("tampered entry: %v, want ErrNotFound", err)
	}
	if err := s.Put(ctx, o); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, o.Digest); err != nil {
		t.Fatalf("after repair: %v", err)
	}

	// Objects whose data does not match the digest are refused.
	bad := obj("x")
	bad.Data = []byte("y")
	if err := s.Put(ctx, bad); err == nil {
		t.Fatal("mismatched object stored")
	}
	// Another prefix is another namespace.
	if _, err := NewRedisStore(client, RedisOptions{Prefix: "u:"}).Get(ctx, o.Digest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other prefix: %v", err)
	}

	// TTL.
	ttlStore := NewRedisStore(client, RedisOptions{Prefix: "ttl:", TTL: time.Hour})
	if err := ttlStore.Put(ctx, o); err != nil {
		t.Fatal(err)
	}
	if ttl, err := client.TTL(ctx, "ttl:"+o.Digest.String()).Result(); err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
		t.Fatalf("TTL = %v, %v; want about an hour", ttl, err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRedisStoreAuthAndDown(t *testing.T) {
	ctx := context.Background()
	addr := startRedis(t, "--requirepass", "s3cret")
	noPass := NewRedisStore(redis.NewClient(&redis.Options{Addr: addr}), RedisOptions{})
	o := obj("x")
	if err := noPass.Put(ctx, o); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("put without the password: %v", err)
	}
	s := NewRedisStore(redis.NewClient(&redis.Options{Addr: addr, Password: "s3cret", DB: 3}), RedisOptions{})
	if err := s.Put(ctx, o); err != nil {
		t.Fatal(err)
	}
	if _, err := NewRedisStore(redis.NewClient(&redis.Options{Addr: addr, Password: "s3cret", DB: 0}), RedisOptions{}).Get(ctx, o.Digest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("db 0 sees db 3's object: %v", err)
	}

	// A store that cannot reach Redis fails (not ErrNotFound), and /readyz
	// says so.
	down := NewRedisStore(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: 3, DialTimeout: time.Second}), RedisOptions{})
	if _, err := down.Get(ctx, o.Digest); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("get from an unreachable redis: %v", err)
	}
	// Then it backs off: no more waiting on Redis for a while.
	start := time.Now()
	for i := 0; i < 20; i++ {
		if _, err := down.Get(ctx, o.Digest); !errors.Is(err, errRedisDown) {
			t.Fatalf("get during the backoff: %v", err)
		}
		if err := down.Put(ctx, o); !errors.Is(err, errRedisDown) {
			t.Fatalf("put during the backoff: %v", err)
		}
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Fatalf("40 calls during the backoff took %v", d)
	}
	// A Redis error reply (here: NOAUTH) is not an outage.
	if _, err := noPass.Get(ctx, o.Digest); err == nil {
		t.Fatal("get without the password succeeded")
	}
	if !noPass.available() {
		t.Fatal("an error reply started a backoff")
	}
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer reg.Close()
	u, _ := url.Parse(reg.URL)
	for _, tc := range []struct {
		store Store
		want  int
	}{
		{TieredStore{NewMemoryStore(1 << 20), down}, http.StatusServiceUnavailable},
		{TieredStore{NewMemoryStore(1 << 20), s}, http.StatusOK},
	} {
		p, err := New(Options{Upstream: u, Store: tc.store, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if rec.Code != tc.want {
			t.Errorf("/readyz = %d, want %d: %s", rec.Code, tc.want, rec.Body)
		}
	}
}
