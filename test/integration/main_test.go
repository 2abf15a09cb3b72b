// Package integration holds bgpgw's end-to-end tests: the real bgpgw binary,
// real FRR and real kernel routes in throwaway network namespaces. They need
// root and fail (never skip) when they cannot run.
package integration

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/bgpgw/bgpgw/internal/lab"
)

// bgpgwBin is the binary under test, built once by TestMain.
var bgpgwBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bgpgw-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		os.Exit(1)
	}
	bgpgwBin, err = lab.BuildBgpgw(context.Background(), dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}
