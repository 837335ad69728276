package tests

import (
	"net/http"
	"strings"
	"testing"
)

// hack/daemons refuses a second daemon under a name that runs already:
// its pid file would replace the first one's, and "down" would leave the
// first one running (a test's extra registry named like a buildkitd did
// so after every run). The first daemon keeps serving.
func TestDaemonsRefuseNameInUse(t *testing.T) {
	first, err := daemons.ExtraRegistry("name-in-use")
	if err != nil {
		t.Fatal(err)
	}
	_, err = daemons.ExtraRegistry("name-in-use")
	if err == nil || !strings.Contains(err.Error(), "a daemon named name-in-use runs under "+env.dir+" already (pid ") {
		t.Fatalf("a second registry named name-in-use: %v", err)
	}
	resp, err := http.Get("http://" + first + "/v2/")
	if err != nil {
		t.Fatalf("the first registry after the refusal: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the first registry after the refusal: GET /v2/: %s", resp.Status)
	}
}
