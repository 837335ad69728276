package descriptor

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"go.yaml.in/yaml/v3"

	"github.com/tdfs-kit/tdfs/field"
)

// Besides paths in the build context, an allotment's sources may be files
// behind HTTP(S) URLs, pinned by "checksum", or paths inside another image
// or named build context, named by "from". These keys are shared with the
// CIR descriptor keys: lowercase, camelCase for compound names.

// ReservedContexts are named build contexts with a meaning of their own; an
// allotment's "from" cannot name them.
var ReservedContexts = []string{"base", "cir"}

// secretID is what BuildKit and buildx accept as a secret id in practice.
var secretID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// IsURL reports whether a src names a remote file rather than a path. Any
// scheme counts, so "s3://..." gets a clear error instead of being looked
// up as a folder named "s3:".
func IsURL(src string) bool {
	scheme, _, ok := strings.Cut(src, "://")
	return ok && scheme != "" && !strings.ContainsAny(scheme, "/.")
}

// RedactURL returns a URL as it may be shown anywhere (history, progress,
// errors, the field record): without user info, query string or fragment,
// which carry credentials (signed URLs put theirs in the query).
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		// Best effort on what url.Parse refuses: cut the query, then the
		// user info of the authority.
		s, _, _ := strings.Cut(raw, "?")
		s, _, _ = strings.Cut(s, "#")
		if scheme, rest, ok := strings.Cut(s, "://"); ok {
			auth, p, _ := strings.Cut(rest, "/")
			if i := strings.LastIndex(auth, "@"); i >= 0 {
				auth = auth[i+1:]
			}
			s = scheme + "://" + auth
			if p != "" || strings.Contains(rest, "/") {
				s += "/" + p
			}
		}
		return s
	}
	u.User = nil
	u.RawQuery = ""
	u.ForceQuery = false
	u.Fragment = ""
	u.RawFragment = ""
	return u.String()
}

// RedactText strips user info and query strings from every http(s) URL in a
// message, such as an error that came back from buildkitd.
func RedactText(s string) string {
	return urlInText.ReplaceAllStringFunc(s, func(u string) string {
		// Punctuation that ends a sentence or a "URL: cause" is not the
		// URL's own.
		trimmed := strings.TrimRight(u, ".,;:)]")
		return RedactURL(trimmed) + u[len(trimmed):]
	})
}

var urlInText = regexp.MustCompile(`(?i)https?://[^\s"'<>` + "`" + `]+`)

// checkURL returns what is wrong with a URL source, or "". The message never
// repeats the URL's user info or query.
func checkURL(s string) string {
	if msg := checkName(s); msg != "" {
		return msg
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the whole URL
		}
		return "is not a valid URL: " + err.Error()
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	default:
		return fmt.Sprintf("URL scheme %q is not supported; sources are build-context paths or http(s) URLs", u.Scheme)
	}
	if u.Host == "" {
		return "URL has no host"
	}
	if u.User != nil {
		return `URL carries credentials (user info); never put them in the descriptor: store the Authorization header value in a file, pass it with --secret id=NAME,src=FILE and name it with "authSecret": "NAME"`
	}
	return ""
}

// checkFromSrc returns what is wrong with a path read inside another image
// or named context, or "". Absolute paths are fine there, as in COPY --from.
func checkFromSrc(s string) string {
	if msg := checkSrcName(s); msg != "" {
		return msg
	}
	if slices.Contains(strings.Split(s, "/"), "..") {
		return `must not contain ".."`
	}
	return ""
}

// fromPath is the clean, relative form of a src read inside another image or
// context: "/opt/w" and "opt/w" name the same path.
func fromPath(src string) string {
	c := strings.TrimPrefix(path.Clean("/"+src), "/")
	if c == "" {
		return "."
	}
	return c
}

// srcLabel names src[j] in a message: URLs redacted, so no credential is
// echoed even in the error that refuses it.
func srcLabel(j int, s string) string {
	if IsURL(s) {
		s = RedactURL(s)
	}
	return fmt.Sprintf("src[%d] %s", j, quote(s))
}

// sources reads and checks the source keys of an allotment: src, checksum,
// authSecret, from and unpinned.
func (p *parser) sources(a *Allotment, keys map[string][2]*yaml.Node, cell *field.Cell) {
	i := a.Index
	if kv, ok := keys["from"]; ok {
		a.From = p.str(kv[1], i, cell, "from")
		a.FromPos = pos(kv[1])
		if msg := checkFrom(a.From); msg != "" && kv[1].Tag == "!!str" {
			p.add(pos(kv[1]), i, cell, "from "+quote(a.From), msg)
		}
	}
	if kv, ok := keys["unpinned"]; ok {
		if kv[1].Kind != yaml.ScalarNode || kv[1].Tag != "!!bool" {
			p.add(pos(kv[1]), i, cell, "unpinned", "must be true or false, got "+describe(kv[1]))
		} else {
			a.Unpinned = kv[1].Value == "true" || kv[1].Value == "True" || kv[1].Value == "TRUE"
		}
	}
	if kv, ok := keys["authSecret"]; ok {
		a.AuthSecret = p.str(kv[1], i, cell, "authSecret")
		a.AuthSecretPos = pos(kv[1])
		if kv[1].Tag == "!!str" && !secretID.MatchString(a.AuthSecret) {
			p.add(pos(kv[1]), i, cell, "authSecret", fmt.Sprintf("%s is not a secret id: use letters, digits, '.', '_' and '-', as in --secret id=NAME,src=FILE", quote(a.AuthSecret)))
		}
	}
	if kv, ok := keys["src"]; ok {
		a.Src, a.SrcPos = p.paths(kv[1], i, cell, "src")
	}
	urls := 0
	for j, s := range a.Src {
		var msg string
		switch {
		case IsURL(s) && a.From != "":
			msg = fmt.Sprintf(`is a URL, but the allotment reads its sources from %s; put URLs in an allotment without "from"`, quote(a.From))
		case IsURL(s):
			urls++
			msg = checkURL(s)
		case a.From != "":
			msg = checkFromSrc(s)
		default:
			msg = checkSrc(s)
		}
		if msg != "" {
			p.add(a.SrcPos[j], i, cell, srcLabel(j, s), msg)
		}
	}
	// A checksum key that cannot be read was reported already; missing
	// checksums are then not reported on top.
	checksumOK := true
	scalar := false
	if kv, ok := keys["checksum"]; ok {
		scalar = kv[1].Kind == yaml.ScalarNode
		a.Checksum, a.ChecksumPos = p.stringList(kv[1], i, cell, "checksum", `a "sha256:…" digest or a list of them`, "a string")
		checksumOK = a.Checksum != nil
		if a.Checksum != nil && a.Src != nil && len(a.Checksum) != len(a.Src) {
			p.add(pos(kv[1]), i, cell, "checksum", fmt.Sprintf("lists %d checksums but src lists %d; give one per src, \"\" for a path", len(a.Checksum), len(a.Src)))
			a.Checksum, checksumOK = nil, false
		}
	}
	for j, s := range a.Src {
		sum := ""
		if j < len(a.Checksum) {
			sum = a.Checksum[j]
		}
		label := fmt.Sprintf("checksum[%d]", j)
		if scalar {
			label = "checksum"
		}
		switch {
		case !IsURL(s) && sum != "":
			p.add(a.ChecksumPos[j], i, cell, label, fmt.Sprintf("%s is a path, not a URL: checksums pin URLs only (use \"\" for it in the list)", srcLabel(j, s)))
		case IsURL(s) && sum != "":
			if msg := checkChecksum(sum); msg != "" {
				p.add(a.ChecksumPos[j], i, cell, label+" "+quote(sum), msg)
			}
		case IsURL(s) && !a.Unpinned && checksumOK && a.From == "" && checkURL(s) == "":
			p.add(a.SrcPos[j], i, cell, srcLabel(j, s), `has no checksum, so the field would not be reproducible: add "checksum": "sha256:…" (the file's sha256sum), or set "unpinned": true on the allotment to fetch whatever the URL serves`)
		}
	}
	if urls == 0 {
		if kv, ok := keys["authSecret"]; ok {
			p.add(pos(kv[1]), i, cell, "authSecret", "applies to URL sources only, and this allotment has none")
		}
		if kv, ok := keys["unpinned"]; ok && a.Unpinned {
			p.add(pos(kv[1]), i, cell, "unpinned", "applies to URL sources only, and this allotment has none")
		}
	}
}

// checkFrom returns what is wrong with a "from" value, or "".
func checkFrom(from string) string {
	if strings.TrimSpace(from) == "" {
		return "must name an image or a named build context"
	}
	for _, r := range ReservedContexts {
		if from == r {
			return fmt.Sprintf("the build context name %q is reserved (base is the field's base image, cir the CIR being deployed); name the context otherwise, e.g. --build-context weights=...", r)
		}
	}
	if _, err := reference.ParseNormalizedNamed(from); err != nil {
		return "is neither an image reference nor a build context name: " + err.Error()
	}
	return ""
}

// checkChecksum returns what is wrong with a checksum, or "". BuildKit's
// HTTP source hashes downloads with sha256 only, so that is what pins.
func checkChecksum(s string) string {
	d, err := digest.Parse(s)
	if err != nil || d.Algorithm() != digest.SHA256 {
		return `must be a sha256 digest: "sha256:" and 64 lowercase hex digits (the output of sha256sum)`
	}
	return ""
}

// urlFileName is the last segment of a URL's path, as a file name, or ""
// when it has none.
func urlFileName(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	name := path.Base(u.Path)
	if strings.HasSuffix(u.Path, "/") || name == "/" || name == "." || name == ".." {
		return ""
	}
	return name
}
