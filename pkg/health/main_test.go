package health

import (
	"testing"

	"github.com/bgpgw/bgpgw/internal/lab"
)

// TestMain runs the tests in a network namespace of their own: what they bind, connect to
// and ping stays there.
func TestMain(m *testing.M) { lab.RunInPrivateNetns(m) }
