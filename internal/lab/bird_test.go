package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// birdLabConf is a BIRD router of TestLabBIRD: one eBGP session to the
// other, announcing a static prefix, the learned one into the kernel.
const birdLabConf = `router id %[1]s;
protocol device {}
protocol static { ipv4; route %[3]s blackhole; }
protocol kernel kernel4 { ipv4 { import none; export where source = RTS_BGP; }; }
protocol bgp peer {
	local %[1]s as %[4]d;
	neighbor %[2]s as %[5]d;
	connect delay time 1;
	connect retry time 2;
	ipv4 { import all; export where source = RTS_STATIC; };
}
`

// TestLabBIRD runs two BIRD instances in two namespaces with an eBGP
// session, reads them through the parsers, stops one and checks that
// Close leaves no process, socket or file behind; a configuration BIRD
// refuses fails StartBIRD with BIRD's complaint.
func TestLabBIRD(t *testing.T) {
	l := ForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := l.Netns("a")
	require.NoError(t, err)
	b, err := l.Netns("b")
	require.NoError(t, err)
	require.NoError(t, l.Link(a, "eth0", "10.0.13.1/30", b, "eth0", "10.0.13.2/30"))

	ba, err := l.StartBIRD(ctx, a, "a", fmt.Sprintf(birdLabConf, "10.0.13.1", "10.0.13.2", "10.88.0.0/16", 65001, 65002))
	require.NoError(t, err)
	bb, err := l.StartBIRD(ctx, b, "b", fmt.Sprintf(birdLabConf, "10.0.13.2", "10.0.13.1", "10.77.0.0/16", 65002, 65001))
	require.NoError(t, err)
	_, err = l.StartBIRD(ctx, a, "a", "")
	require.Error(t, err, "a BIRD name is usable once per lab")
	assert.Equal(t, l.Prefix()+"-a", ba.Name())

	err = Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		p, ok, err := ba.Protocol(ctx, "peer")
		if err != nil || !ok || !p.Established() {
			return false, err
		}
		rs, err := ba.Routes(ctx, "for", "10.77.0.1", "export", "kernel4")
		return len(rs) == 1, err
	})
	require.NoError(t, err, "BGP between the two BIRDs\n%s\n%s", ba.LogTail(20), bb.LogTail(20))
	p, _, err := ba.Protocol(ctx, "peer")
	require.NoError(t, err)
	assert.Equal(t, uint32(65002), p.NeighborAS)
	assert.Equal(t, "10.0.13.2", p.NeighborAddress.String())
	rs, err := ba.Routes(ctx, "protocol", "peer")
	require.NoError(t, err)
	require.Len(t, rs, 1)
	assert.Equal(t, "10.77.0.0/16", rs[0].Prefix.String())
	assert.Equal(t, "10.0.13.2", rs[0].NextHops[0].Via.String())
	kr, err := a.IP(ctx, "route", "show", "10.77.0.0/16")
	require.NoError(t, err)
	assert.Contains(t, kr, "proto bird")
	rs, err = ba.Routes(ctx, "for", "192.0.2.1")
	require.NoError(t, err, "no route is an answer")
	assert.Empty(t, rs)
	_, err = ba.BFDSessions(ctx)
	assert.Error(t, err, "no BFD protocol configured")
	assert.Contains(t, ba.LogTail(50), "Started", "BIRD logs to the lab's file")

	// BIRD b stopped: a's session goes down and the route leaves its table.
	require.NoError(t, bb.Stop())
	require.NoError(t, bb.Stop(), "Stop is idempotent")
	require.NoError(t, Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		rs, err := ba.Routes(ctx, "protocol", "peer")
		return len(rs) == 0, err
	}))

	// A configuration BIRD refuses: StartBIRD fails and says why.
	c, err := l.Netns("c")
	require.NoError(t, err)
	_, err = l.StartBIRD(ctx, c, "bad", "protocol nonsense {}\n")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "syntax error")

	dirs := []string{ba.Dir(), bb.Dir()}
	require.NoError(t, l.Close())
	for _, d := range dirs {
		_, err := os.Stat(d)
		assert.True(t, errors.Is(err, os.ErrNotExist), "%s left behind", d)
		// No bird process of this lab left (its command line names the socket).
		out, err := exec.CommandContext(ctx, "pgrep", "-f", "--", filepath.Join(d, "bird.ctl")).CombinedOutput()
		var ee *exec.ExitError
		assert.True(t, errors.As(err, &ee) && ee.ExitCode() == 1, "bird of %s still running: %s (%v)", d, strings.TrimSpace(string(out)), err)
	}
}

func TestCheckBIRDConfig(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.conf")
	require.NoError(t, os.WriteFile(good, []byte("router id 192.0.2.1;\nprotocol device {}\n"), 0o600))
	assert.NoError(t, CheckBIRDConfig(ctx, good))
	bad := filepath.Join(dir, "bad.conf")
	require.NoError(t, os.WriteFile(bad, []byte("protocol device {\n"), 0o600))
	err := CheckBIRDConfig(ctx, bad)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bad.conf")
}
