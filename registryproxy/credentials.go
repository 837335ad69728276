package registryproxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// credentialTransport authenticates requests to one upstream that carry no
// Authorization of their own, with configured credentials: Basic when the
// registry challenges with Basic, and the registry token flow (a token from
// the challenge's realm, fetched with Basic credentials) when it challenges
// with Bearer. Requests that carry the client's Authorization pass through
// untouched: the client's own identity always wins.
type credentialTransport struct {
	base  http.RoundTripper
	host  string // the upstream's host:port; other hosts get nothing
	https bool   // the upstream's scheme; token realms must not downgrade
	creds BasicAuth

	mu     sync.Mutex
	basic  bool                   // the upstream accepts Basic: send it up front
	tokens map[string]bearerToken // by repository name ("" for /v2/)
}

type bearerToken struct {
	token   string
	expires time.Time
}

func newCredentialTransport(base http.RoundTripper, upstream *url.URL, creds BasicAuth) *credentialTransport {
	return &credentialTransport{base: base, host: upstream.Host, https: upstream.Scheme == "https", creds: creds, tokens: map[string]bearerToken{}}
}

func (t *credentialTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("Authorization") != "" || req.URL.Host != t.host {
		return t.base.RoundTrip(req)
	}
	repo := repositoryOf(req.URL.Path)
	out := req.Clone(req.Context())
	t.authorize(out, repo)
	resp, err := t.base.RoundTrip(out)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	// Only bodiless requests can be replayed after the challenge. Mirror
	// mode is pull-only, and writes bring the client's own credentials.
	if req.Body != nil && req.Body != http.NoBody {
		return resp, nil
	}
	scheme, params := parseChallenge(resp.Header.Get("WWW-Authenticate"))
	switch scheme {
	case "basic":
		t.mu.Lock()
		t.basic = true
		t.mu.Unlock()
	case "bearer":
		token, err := t.fetchToken(req, params)
		if err != nil {
			// Relay the upstream's 401: the client sees why, and may
			// bring credentials of its own.
			return resp, nil
		}
		t.mu.Lock()
		t.tokens[repo] = token
		t.mu.Unlock()
	default:
		return resp, nil
	}
	resp.Body.Close()
	retry := req.Clone(req.Context())
	t.authorize(retry, repo)
	return t.base.RoundTrip(retry)
}

func (t *credentialTransport) authorize(r *http.Request, repo string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tok, ok := t.tokens[repo]; ok && time.Now().Before(tok.expires) {
		r.Header.Set("Authorization", "Bearer "+tok.token)
	} else if t.basic {
		r.SetBasicAuth(t.creds.Username, t.creds.Password)
	}
}

// fetchToken asks the challenge's realm for a token. The realm comes from
// the configured upstream's answer, never from a client request.
func (t *credentialTransport) fetchToken(req *http.Request, params map[string]string) (bearerToken, error) {
	realm, err := url.Parse(params["realm"])
	if err != nil || realm.Host == "" || (realm.Scheme != "https" && (t.https || realm.Scheme != "http")) {
		return bearerToken{}, fmt.Errorf("unusable token realm %q", params["realm"])
	}
	q := realm.Query()
	if s := params["service"]; s != "" {
		q.Set("service", s)
	}
	if s := params["scope"]; s != "" {
		q.Set("scope", s)
	}
	realm.RawQuery = q.Encode()
	treq, err := http.NewRequestWithContext(req.Context(), http.MethodGet, realm.String(), nil)
	if err != nil {
		return bearerToken{}, err
	}
	treq.SetBasicAuth(t.creds.Username, t.creds.Password)
	resp, err := t.base.RoundTrip(treq)
	if err != nil {
		return bearerToken{}, redact(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return bearerToken{}, fmt.Errorf("token realm answered %s", resp.Status)
	}
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return bearerToken{}, fmt.Errorf("token realm: %w", err)
	}
	tok := body.Token
	if tok == "" {
		tok = body.AccessToken
	}
	if tok == "" {
		return bearerToken{}, fmt.Errorf("token realm returned no token")
	}
	// The distribution token spec's default lifetime is 60 s; renew a
	// little early so a token does not expire in flight.
	life := time.Duration(body.ExpiresIn) * time.Second
	if life <= 0 {
		life = 60 * time.Second
	}
	return bearerToken{token: tok, expires: time.Now().Add(life * 9 / 10)}, nil
}

// repositoryOf returns the repository name of a /v2/ API path, or "".
func repositoryOf(path string) string {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return ""
	}
	for _, sep := range []string{"/manifests/", "/blobs/", "/tags/", "/referrers/"} {
		if i := strings.LastIndex(rest, sep); i > 0 {
			return rest[:i]
		}
	}
	return ""
}

// parseChallenge parses a WWW-Authenticate value such as
// `Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull"`.
// It returns the lower-cased scheme and the parameters.
func parseChallenge(h string) (string, map[string]string) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	params := map[string]string{}
	for rest = strings.TrimSpace(rest); rest != ""; {
		key, after, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		key = strings.ToLower(strings.TrimSpace(key))
		var val string
		if strings.HasPrefix(after, `"`) {
			// Quoted string: runs to the next unescaped quote.
			var b strings.Builder
			i := 1
			for ; i < len(after) && after[i] != '"'; i++ {
				if after[i] == '\\' && i+1 < len(after) {
					i++
				}
				b.WriteByte(after[i])
			}
			val = b.String()
			after = after[min(i+1, len(after)):]
		} else {
			val, after, _ = strings.Cut(after, ",")
			after = "," + after
		}
		params[key] = strings.TrimSpace(val)
		rest = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(after), ","))
	}
	return strings.ToLower(scheme), params
}
