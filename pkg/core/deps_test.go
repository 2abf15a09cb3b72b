package core

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoIODependencies: the core and the types it speaks in depend on none
// of the libraries that do the daemon's I/O: GoBGP, gRPC, netlink, govici,
// viper, Prometheus. (pkg/config still reads secret files when it decodes.) Those sit behind their adapters (pkg/bgp, pkg/route,
// pkg/ipsec, pkg/configfile, pkg/metrics); the core uses pkg/model and
// pkg/config.
func TestNoIODependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	forbidden := []string{
		"github.com/osrg/gobgp/",
		"google.golang.org/grpc",
		"github.com/vishvananda/netlink",
		"github.com/strongswan/govici",
		"github.com/spf13/viper",
		"github.com/prometheus/",
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 {
		t.Fatal("go list -deps listed nothing")
	}
	for _, d := range deps {
		for _, f := range forbidden {
			if strings.HasPrefix(d, f) {
				t.Errorf("pkg/core depends on %s", d)
			}
		}
	}
	t.Logf("%d packages in pkg/core's dependencies", len(deps))
}
