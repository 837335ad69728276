package registryproxy

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/distribution/reference"

	"github.com/tdfs-kit/tdfs/field"
)

// Kinds of distribution API route (apiRoute.kind).
const (
	routeBase      = "base"      // /v2/
	routeCatalog   = "catalog"   // /v2/_catalog
	routeManifests = "manifests" // /v2/<name>/manifests/<tag or digest>
	routeBlobs     = "blobs"     // /v2/<name>/blobs/<digest>
	routeUploads   = "uploads"   // /v2/<name>/blobs/uploads/[<id>]
	routeTags      = "tags"      // /v2/<name>/tags/list
	routeReferrers = "referrers" // /v2/<name>/referrers/<digest>
)

// apiRoute is a request path the proxy accepts: a well-formed distribution
// API path. Only these reach an upstream, and only in their canonical form
// (path), so a registry behind a path-normalising front end never sees a
// path the proxy did not check: the proxy's own credentials would otherwise
// reach whatever `/v2/../admin` resolves to there.
type apiRoute struct {
	kind string
	name string // repository, for the routes that have one
	ref  string // tag or digest (manifests, blobs, referrers), upload id
	path string // canonical path: decoded, forwarded without RawPath
}

var (
	tagRE    = regexp.MustCompile(`^(?:` + reference.TagRegexp.String() + `)$`)
	digestRE = regexp.MustCompile(`^(?:` + reference.DigestRegexp.String() + `)$`)
	// uploadIDRE is what registries use for upload session ids (UUIDs,
	// base64url state); a dot-only id is refused separately.
	uploadIDRE = regexp.MustCompile(`^[A-Za-z0-9._~=+:-]{1,256}$`)
)

// routeMethods are the methods each route accepts.
var routeMethods = map[string][]string{
	routeBase:      {http.MethodGet, http.MethodHead},
	routeCatalog:   {http.MethodGet, http.MethodHead},
	routeManifests: {http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete},
	routeBlobs:     {http.MethodGet, http.MethodHead, http.MethodDelete},
	routeUploads:   {http.MethodPost, http.MethodGet, http.MethodHead, http.MethodPatch, http.MethodPut, http.MethodDelete},
	routeTags:      {http.MethodGet, http.MethodHead},
	routeReferrers: {http.MethodGet, http.MethodHead},
}

// routeError is a request the router refuses; status and code are the
// registry-style answer.
type routeError struct {
	status  int
	code    string
	message string
}

func (e *routeError) Error() string { return e.message }

// parseRoute matches a decoded request path (http.Request.URL.Path) and
// method against the distribution API. Names must match the distribution
// name grammar and be at most reference.RepositoryNameTotalLengthMax long;
// empty, "." and ".." segments never match (404). A malformed tag or digest
// in an API path is 400, as the distribution spec wants. Uploads are
// refused when readOnly.
func parseRoute(method, path string, readOnly bool) (apiRoute, error) {
	notFound := func(code, format string, args ...any) (apiRoute, error) {
		return apiRoute{}, &routeError{http.StatusNotFound, code, fmt.Sprintf(format, args...)}
	}
	var rt apiRoute
	switch path {
	case "/v2", "/v2/":
		rt = apiRoute{kind: routeBase, path: "/v2/"}
	case "/v2/_catalog":
		rt = apiRoute{kind: routeCatalog, path: path}
	default:
		rest, ok := strings.CutPrefix(path, "/v2/")
		if !ok {
			return notFound(codeUnsupported, "%q is not a registry API path", truncate(path))
		}
		segs := strings.Split(rest, "/")
		n := len(segs)
		for _, seg := range segs {
			if seg == "." || seg == ".." {
				return notFound(codeUnsupported, "%q is not a registry API path", truncate(path))
			}
		}
		// A malformed tag or digest in an API path is the client's
		// mistake, answered as registries do (400); the path is still
		// never forwarded.
		badRef := func(code, format string, args ...any) (apiRoute, error) {
			return apiRoute{}, &routeError{http.StatusBadRequest, code, fmt.Sprintf(format, args...)}
		}
		nameEnd := -1
		switch {
		case n >= 3 && segs[n-2] == "manifests":
			ref := segs[n-1]
			// Partition-shaped tags are answered by the proxy (and a
			// malformed one refused with TAG_INVALID), never forwarded.
			switch {
			case ref == "":
				return notFound(codeUnsupported, "%q is not a registry API path", truncate(path))
			case strings.Contains(ref, ":") && !digestRE.MatchString(ref):
				return badRef(codeDigestInvalid, "%q is not a valid digest", truncate(ref))
			case !tagRE.MatchString(ref) && !digestRE.MatchString(ref) && !field.IsPartitionTag(ref):
				return badRef(codeTagInvalid, "%q is not a valid tag", truncate(ref))
			}
			rt, nameEnd = apiRoute{kind: routeManifests, ref: ref}, n-2
		case n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads":
			id := segs[n-1]
			if id != "" && (!uploadIDRE.MatchString(id) || strings.Trim(id, ".") == "") {
				return notFound(codeUnsupported, "%q is not an upload id", truncate(id))
			}
			rt, nameEnd = apiRoute{kind: routeUploads, ref: id}, n-3
		case n >= 3 && segs[n-2] == "blobs" && segs[n-1] == "uploads":
			rt, nameEnd = apiRoute{kind: routeUploads}, n-2
		case n >= 3 && segs[n-2] == "blobs" && segs[n-1] != "":
			if !digestRE.MatchString(segs[n-1]) {
				return badRef(codeDigestInvalid, "%q is not a valid digest", truncate(segs[n-1]))
			}
			rt, nameEnd = apiRoute{kind: routeBlobs, ref: segs[n-1]}, n-2
		case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list":
			rt, nameEnd = apiRoute{kind: routeTags}, n-2
		case n >= 3 && segs[n-2] == "referrers" && segs[n-1] != "":
			if !digestRE.MatchString(segs[n-1]) {
				return badRef(codeDigestInvalid, "%q is not a valid digest", truncate(segs[n-1]))
			}
			rt, nameEnd = apiRoute{kind: routeReferrers, ref: segs[n-1]}, n-2
		default:
			return notFound(codeUnsupported, "%q is not a registry API path", truncate(path))
		}
		rt.name = strings.Join(segs[:nameEnd], "/")
		if len(rt.name) > reference.RepositoryNameTotalLengthMax {
			return apiRoute{}, &routeError{http.StatusNotFound, codeNameInvalid,
				fmt.Sprintf("repository name is %d characters, the limit is %d", len(rt.name), reference.RepositoryNameTotalLengthMax)}
		}
		if !nameRE.MatchString(rt.name) {
			return apiRoute{}, &routeError{http.StatusNotFound, codeNameInvalid, fmt.Sprintf("invalid repository name %q", truncate(rt.name))}
		}
		rt.path = path
	}
	if rt.kind == routeUploads && readOnly {
		return apiRoute{}, &routeError{http.StatusMethodNotAllowed, codeUnsupported, "this registry proxy is read-only"}
	}
	for _, m := range routeMethods[rt.kind] {
		if m == method {
			return rt, nil
		}
	}
	return apiRoute{}, &routeError{http.StatusMethodNotAllowed, codeUnsupported, fmt.Sprintf("%s is not allowed on %s", truncate(method), rt.kind)}
}

// route parses r's route, answering the client itself when it is refused.
func (p *Proxy) route(w http.ResponseWriter, r *http.Request) (apiRoute, *http.Request, bool) {
	rt, err := parseRoute(r.Method, r.URL.Path, p.readOnly)
	if err != nil {
		re := err.(*routeError)
		writeError(w, re.status, re.code, re.message)
		return rt, r, false
	}
	return rt, rt.request(r), true
}

// request returns r with its path replaced by the canonical one: what the
// proxy checked is what the upstream gets (RawPath is dropped, so an
// encoded "/" reaches it as the "/" the check saw).
func (rt apiRoute) request(r *http.Request) *http.Request {
	if r.URL.Path == rt.path && r.URL.RawPath == "" {
		return r
	}
	r2 := new(http.Request)
	*r2 = *r
	u := *r.URL
	u.Path, u.RawPath = rt.path, ""
	r2.URL = &u
	return r2
}

// truncate shortens what a client sent for an error message.
func truncate(s string) string {
	const max = 256
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
