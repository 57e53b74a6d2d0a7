// kube-probe: an in-cluster API client in a few lines of the Go standard library, for the e2e
// cluster's smoke test. From inside a pod it connects to the API server the way in-cluster
// clients do (KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT, i.e. the `kubernetes` Service
// ClusterIP through kube-proxy), verifies the server certificate against the service-account
// CA, authenticates with the service-account token, and prints the server version and the
// identity the API server saw (a SelfSubjectReview). Exits non-zero on any failure.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kube-probe:", err)
		os.Exit(1)
	}
}

func run() error {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return fmt.Errorf("KUBERNETES_SERVICE_HOST/PORT not set: not in a pod?")
	}
	caPEM, err := os.ReadFile(saDir + "/ca.crt")
	if err != nil {
		return err
	}
	token, err := os.ReadFile(saDir + "/token")
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("no certificate in %s/ca.crt", saDir)
	}
	client := &http.Client{
		Timeout: 15 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			Proxy:           nil,
		},
	}
	base := "https://" + net.JoinHostPort(host, port)
	call := func(method, path string, body []byte, out any) error {
		req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+string(bytes.TrimSpace(token)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, data)
		}
		return json.Unmarshal(data, out)
	}

	var version struct {
		GitVersion string `json:"gitVersion"`
	}
	if err := call("GET", "/version", nil, &version); err != nil {
		return err
	}
	var review struct {
		Status struct {
			UserInfo struct {
				Username string `json:"username"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	body := []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`)
	if err := call("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body, &review); err != nil {
		return err
	}
	fmt.Printf("server=%s version=%s user=%s tls=verified\n", base, version.GitVersion, review.Status.UserInfo.Username)
	return nil
}
