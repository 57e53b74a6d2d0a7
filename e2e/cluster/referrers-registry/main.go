// referrers-registry: an OCI registry that implements the distribution-spec 1.1 referrers API
// (GET /v2/<name>/referrers/<digest>), for the e2e suite's shared-registry tests beside Debian's
// registry 2.8, which has no such API. It is go-containerregistry's registry package (manifests
// in memory, blobs on disk) with referrers support switched on; nothing of it is changed here.
//
// One fix on top, in locationOnCreate: the package answers a finished blob upload (PUT) with 201
// but without the Location header the distribution spec requires, which OCI clients such as
// oci-client (our entrypoint's) rely on.
//
// Note: that package reports a referrer's artifactType from its config media type, so artifacts
// with the empty config (application/vnd.oci.empty.v1+json) show that type in the index; the
// operator reads such a referrer's manifest when the type matters.
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5002", "address to listen on")
	blobs := flag.String("blobs", "", "directory for blobs (required)")
	flag.Parse()
	if *blobs == "" {
		log.Fatal("-blobs is required")
	}
	if err := os.MkdirAll(*blobs, 0o755); err != nil {
		log.Fatal(err)
	}
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("serving on %s", listener.Addr())
	server := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: locationOnCreate(registry.New(
			registry.WithReferrersSupport(true),
			registry.WithBlobHandler(registry.NewDiskBlobHandler(*blobs)),
		)),
	}
	log.Fatal(server.Serve(listener))
}

// locationOnCreate adds `Location: /v2/<name>/blobs/<digest>` to a 201 answer of a finished blob
// upload (`PUT /v2/<name>/blobs/uploads/<id>?digest=<digest>`) that has none.
func locationOnCreate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, _, isUpload := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v2/"), "/blobs/uploads/")
		digest := r.URL.Query().Get("digest")
		if r.Method != http.MethodPut || !isUpload || digest == "" {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&created{ResponseWriter: w, location: "/v2/" + name + "/blobs/" + digest}, r)
	})
}

type created struct {
	http.ResponseWriter
	location string
}

func (c *created) WriteHeader(code int) {
	if code == http.StatusCreated && c.Header().Get("Location") == "" {
		c.Header().Set("Location", c.location)
	}
	c.ResponseWriter.WriteHeader(code)
}
