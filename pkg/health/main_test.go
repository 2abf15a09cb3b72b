//go:build !nonetns

package health

import (
	"testing"

	"github.com/bgpgw/bgpgw/internal/lab"
)

// TestMain runs the tests in a network namespace of their own: what they bind, connect to
// and ping stays there. It needs root, and fails without it (lab.RunInPrivateNetns).
//
// The files built with !nonetns hold the tests that need that namespace (this one,
// icmp_test.go, link_test.go). `make check` builds with -tags nonetns: without them and
// without this TestMain, the other tests (fake clock, fake probes, loopback sockets) run as
// any user. `make test` builds without the tag and runs every test here.
func TestMain(m *testing.M) { lab.RunInPrivateNetns(m) }
