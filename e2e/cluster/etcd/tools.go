//go:build tools

// Package tools pins etcd's main package (go build go.etcd.io/etcd/server/v3);
// it is never compiled.
package tools

import _ "go.etcd.io/etcd/server/v3"
