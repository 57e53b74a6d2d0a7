// referrers-registry: an OCI registry that implements the distribution-spec 1.1 referrers API
// (GET /v2/<name>/referrers/<digest>), for the e2e suite's shared-registry tests beside Debian's
// registry 2.8, which has no such API. It is go-containerregistry's registry package (manifests
// in memory, blobs on disk) with referrers support switched on; nothing of it is changed here.
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
		Handler: registry.New(
			registry.WithReferrersSupport(true),
			registry.WithBlobHandler(registry.NewDiskBlobHandler(*blobs)),
		),
	}
	log.Fatal(server.Serve(listener))
}
