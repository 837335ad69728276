// Command 2dfs-proxy is a registry proxy that serves 2DFS partitions: pull
// NAME:TAG--r1.c1.r2.c2 through it to get only the selected allotments of
// NAME:TAG. See docs/proxy.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tdfs-kit/tdfs/registryproxy"
)

// mirrorFlags collects repeated -mirror HOST=URL flags.
type mirrorFlags map[string]*url.URL

func (m mirrorFlags) String() string { return fmt.Sprint(map[string]*url.URL(m)) }

func (m mirrorFlags) Set(v string) error {
	host, raw, ok := strings.Cut(v, "=")
	if !ok || host == "" {
		return fmt.Errorf("want HOST=URL, got %q", v)
	}
	u, err := parseUpstream(raw)
	if err != nil {
		return err
	}
	m[host] = u
	return nil
}

func parseUpstream(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("upstream %q: want http(s)://host[:port] with no path or query", raw)
	}
	u.Path = ""
	return u, nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "2dfs-proxy:", err)
		os.Exit(1)
	}
}

func run() error {
	mirrors := mirrorFlags{}
	cacheDir, _ := os.UserCacheDir()
	defaultStore := ""
	if cacheDir != "" {
		defaultStore = filepath.Join(cacheDir, "2dfs-proxy")
	}
	var (
		listen      = flag.String("listen", ":5000", "address to listen on")
		upstream    = flag.String("upstream", "", "registry to front, e.g. https://registry.example.com (requests without ?ns= go here)")
		tlsCert     = flag.String("tls-cert", "", "TLS certificate file (serve HTTPS; needs -tls-key)")
		tlsKey      = flag.String("tls-key", "", "TLS key file")
		readOnly    = flag.Bool("read-only", false, "refuse every request that is not GET or HEAD")
		storeDir    = flag.String("store-dir", defaultStore, "directory keeping synthesized manifests and configs across restarts (empty: memory only)")
		memBytes    = flag.Int64("memory-store-bytes", registryproxy.DefaultMemoryStoreBytes, "bytes of synthesized objects kept in memory")
		credsFile   = flag.String("upstream-credentials", "", `JSON file {"HOST":{"username":"..","password":".."}}: credentials for upstreams, used (Basic or token flow) on requests that carry none (mirror mode; every client then reads with them)`)
		buildTimout = flag.Duration("build-timeout", registryproxy.DefaultBuildTimeout, "time limit of the upstream round trips of one partition")
		logFormat   = flag.String("log-format", "text", "log format: text or json")
		debug       = flag.Bool("debug", false, "debug logging")
	)
	flag.Var(mirrors, "mirror", "allow containerd mirror requests for ?ns=HOST and send them to URL: HOST=URL (repeatable)")
	flag.Parse()
	if flag.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}

	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	var handler slog.Handler = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	if *logFormat == "json" {
		handler = slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	} else if *logFormat != "text" {
		return fmt.Errorf("-log-format: want text or json, got %q", *logFormat)
	}
	logger := slog.New(handler)

	opts := registryproxy.Options{
		Mirrors:      mirrors,
		ReadOnly:     *readOnly,
		BuildTimeout: *buildTimout,
		Logger:       logger,
	}
	if *upstream != "" {
		u, err := parseUpstream(*upstream)
		if err != nil {
			return err
		}
		opts.Upstream = u
	}
	if opts.Upstream == nil && len(mirrors) == 0 {
		return errors.New("need -upstream or at least one -mirror")
	}
	if *credsFile != "" {
		data, err := os.ReadFile(*credsFile)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(data, &opts.Credentials); err != nil {
			return fmt.Errorf("%s: %w", *credsFile, err)
		}
	}
	var store registryproxy.TieredStore
	if *memBytes > 0 {
		store = append(store, registryproxy.NewMemoryStore(*memBytes))
	}
	if *storeDir != "" {
		ds, err := registryproxy.NewDirStore(*storeDir)
		if err != nil {
			return err
		}
		store = append(store, ds)
	}
	if len(store) == 0 {
		return errors.New("no store: set -memory-store-bytes or -store-dir")
	}
	opts.Store = store

	proxy, err := registryproxy.New(opts)
	if err != nil {
		return err
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return errors.New("-tls-cert and -tls-key go together")
	}

	srv := &http.Server{
		Addr:    *listen,
		Handler: proxy,
		// Headers must arrive promptly; bodies (blob uploads and
		// downloads) may take as long as they take, so there is no
		// read or write timeout.
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(handler, slog.LevelDebug),
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() {
		logger.Info("listening", "addr", *listen, "upstream", *upstream, "mirrors", len(mirrors), "store", *storeDir, "tls", *tlsCert != "", "read-only", *readOnly)
		if *tlsCert != "" {
			errc <- srv.ListenAndServeTLS(*tlsCert, *tlsKey)
		} else {
			errc <- srv.ListenAndServe()
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down: finishing requests in flight")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
