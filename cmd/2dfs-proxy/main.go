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
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tdfs-kit/tdfs/internal/version"
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
		accessTTL   = flag.Duration("access-cache-ttl", registryproxy.DefaultAccessCacheTTL, "trust a caller's successful upstream access check of a stored partition's source this long (per credentials, repository and source; a revoked credential keeps reading for this long); 0: check upstream on every request")
		freshness   = flag.Duration("tag-freshness", registryproxy.DefaultTagFreshness, "serve a caller's repeated partition tag without an upstream HEAD of its base tag this long after the last one succeeded (a moved tag or a revoked credential is noticed up to this late); 0: HEAD on every repeated tag")
		followRedir = flag.Bool("follow-blob-redirects", false, "follow the upstream's redirects of blob requests (to object storage) and stream the blob from there, instead of relaying the redirect to the client (see docs/proxy.md, Blob redirects)")
		buildTimout = flag.Duration("build-timeout", registryproxy.DefaultBuildTimeout, "time limit of the upstream round trips of one partition")
		redisAddr   = flag.String("redis-addr", "", "Redis shared by proxy replicas for synthesized objects: host:port, or a redis:// or rediss:// URL (memory stays in front; -store-dir is then only used if given)")
		redisDB     = flag.Int("redis-db", 0, "Redis database number (host:port form)")
		redisUser   = flag.String("redis-username", "", "Redis ACL user name (host:port form)")
		redisPassF  = flag.String("redis-password-file", "", "file holding the Redis password (or set "+redisPasswordEnv+")")
		redisPrefix = flag.String("redis-prefix", registryproxy.DefaultRedisPrefix, "prefix of the Redis keys")
		redisTTL    = flag.Duration("redis-ttl", 0, "expire objects in Redis this long after they were last built (0: never; rely on maxmemory-policy)")
		logFormat   = flag.String("log-format", "text", "log format: text or json")
		debug       = flag.Bool("debug", false, "debug logging")
		showVersion = flag.Bool("version", false, "print the module version and commit, then exit")
	)
	flag.Var(mirrors, "mirror", "allow containerd mirror requests for ?ns=HOST and send them to URL: HOST=URL (repeatable)")
	flag.Parse()
	if flag.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if *showVersion {
		fmt.Println(version.Read().Line("2dfs-proxy"))
		return nil
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
		Mirrors:             mirrors,
		ReadOnly:            *readOnly,
		BuildTimeout:        *buildTimout,
		AccessCacheTTL:      *accessTTL,
		FollowBlobRedirects: *followRedir,
		TagFreshness:        *freshness,
		Logger:              logger,
	}
	if *accessTTL < 0 {
		return errors.New("-access-cache-ttl must not be negative")
	}
	if *freshness < 0 {
		return errors.New("-tag-freshness must not be negative")
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
	explicit := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	var store registryproxy.TieredStore
	if *memBytes > 0 {
		store = append(store, registryproxy.NewMemoryStore(*memBytes))
	}
	// With Redis the default directory is not used: replicas share Redis,
	// and a local directory would only hide what Redis lost.
	if *storeDir != "" && (*redisAddr == "" || explicit["store-dir"]) {
		ds, err := registryproxy.NewDirStore(*storeDir)
		if err != nil {
			return err
		}
		store = append(store, ds)
	}
	if *redisAddr != "" {
		ropts, err := redisOptions(*redisAddr, *redisDB, *redisUser, *redisPassF, explicit)
		if err != nil {
			return err
		}
		client := redis.NewClient(ropts)
		defer client.Close()
		store = append(store, registryproxy.NewRedisStore(client, registryproxy.RedisOptions{Prefix: *redisPrefix, TTL: *redisTTL}))
	}
	if len(store) == 0 {
		return errors.New("no store: set -memory-store-bytes, -store-dir or -redis-addr")
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
		logger.Info("listening", "addr", *listen, "upstream", *upstream, "mirrors", len(mirrors), "store", storeNames(store), "tls", *tlsCert != "", "read-only", *readOnly)
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

// redisPasswordEnv holds the Redis password when no file is given; a
// password on the command line would show in ps.
const redisPasswordEnv = "TDFS_PROXY_REDIS_PASSWORD"

// redisOptions makes the client options of -redis-addr: host:port with the
// -redis-* flags, or a redis:// / rediss:// URL (which may carry user,
// password and database; explicit flags override it).
func redisOptions(addr string, db int, user, passFile string, explicit map[string]bool) (*redis.Options, error) {
	var o *redis.Options
	if strings.Contains(addr, "://") {
		var err error
		if o, err = redis.ParseURL(addr); err != nil {
			return nil, fmt.Errorf("-redis-addr: %w", err)
		}
	} else {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("-redis-addr %q: want host:port or a redis:// URL: %w", addr, err)
		}
		o = &redis.Options{Addr: addr}
	}
	if explicit["redis-db"] || !strings.Contains(addr, "://") {
		o.DB = db
	}
	if user != "" {
		o.Username = user
	}
	if passFile != "" {
		data, err := os.ReadFile(passFile)
		if err != nil {
			return nil, err
		}
		o.Password = strings.TrimRight(string(data), "\r\n")
	} else if p := os.Getenv(redisPasswordEnv); p != "" {
		o.Password = p
	}
	// Fail fast: a store that hangs holds up every tag request (and the
	// store backs off after a failure). One retry covers a pooled
	// connection that Redis closed.
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = 2*time.Second, 2*time.Second, 2*time.Second
	o.MaxRetries = 1
	return o, nil
}

func storeNames(s registryproxy.TieredStore) string {
	var names []string
	for _, st := range s {
		switch st.(type) {
		case *registryproxy.MemoryStore:
			names = append(names, "memory")
		case *registryproxy.DirStore:
			names = append(names, "dir")
		case *registryproxy.RedisStore:
			names = append(names, "redis")
		}
	}
	return strings.Join(names, "+")
}
