package registryproxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// OCI distribution error codes the proxy answers with.
const (
	codeDenied          = "DENIED"
	codeUnsupported     = "UNSUPPORTED"
	codeManifestUnknown = "MANIFEST_UNKNOWN"
	codeManifestInvalid = "MANIFEST_INVALID"
	codeNameInvalid     = "NAME_INVALID"
	codeDigestInvalid   = "DIGEST_INVALID"
	// codeTagInvalid is not in the OCI list but is what Docker's registry
	// uses for a bad tag; clients print the message either way.
	codeTagInvalid  = "TAG_INVALID"
	codeUnavailable = "UNAVAILABLE"
)

// writeError writes an OCI error body: {"errors":[{"code":..,"message":..}]}.
func writeError(w http.ResponseWriter, status int, code, message string) {
	body, _ := json.Marshal(map[string]any{"errors": []map[string]string{{"code": code, "message": message}}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// upstreamStatusError is a non-success answer from the upstream registry
// that the proxy relays to the client: 401 with its WWW-Authenticate
// challenge, 403, 404, 429 with Retry-After.
type upstreamStatusError struct {
	status int
	header http.Header // only the headers worth relaying
	body   []byte
}

// relayedHeaders are the upstream response headers a relayed error keeps.
var relayedHeaders = []string{"Www-Authenticate", "Retry-After", "Content-Type", "Docker-Distribution-Api-Version"}

func (e *upstreamStatusError) Error() string {
	return fmt.Sprintf("upstream answered %d %s", e.status, http.StatusText(e.status))
}

func (e *upstreamStatusError) write(w http.ResponseWriter) {
	if e.status >= 500 {
		writeError(w, http.StatusBadGateway, codeUnavailable, e.Error())
		return
	}
	for _, k := range relayedHeaders {
		if v := e.header.Values(k); len(v) > 0 {
			w.Header()[k] = v
		}
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(e.body)))
	w.WriteHeader(e.status)
	_, _ = w.Write(e.body)
}

// badUpstreamError is an upstream answer the proxy refuses: a digest that
// does not match, an object over the size caps, unparseable JSON. It maps to
// 502 and is never cached.
type badUpstreamError struct{ err error }

func (e *badUpstreamError) Error() string { return "bad upstream response: " + e.err.Error() }
func (e *badUpstreamError) Unwrap() error { return e.err }

// redact strips the query string from URLs in err: upstreams redirect blob
// reads to signed URLs whose query is a credential, and errors end up in
// logs and responses.
func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil && u.RawQuery != "" {
			u.RawQuery = "REDACTED"
			ue.URL = u.String()
		}
	}
	return err
}
