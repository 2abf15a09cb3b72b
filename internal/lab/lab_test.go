package lab

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const r1Conf = `frr defaults datacenter
hostname r1
!
ip route 10.99.0.0/16 blackhole
!
router bgp 65001
 bgp router-id 10.0.12.1
 no bgp ebgp-requires-policy
 neighbor 10.0.12.2 remote-as 65002
 address-family ipv4 unicast
  network 10.99.0.0/16
 exit-address-family
!
`

const r2Conf = `frr defaults datacenter
hostname r2
!
interface lo
 ip address 10.77.1.1/32
!
route-map TAG permit 10
 set community 65002:100
 set metric 50
!
router bgp 65002
 bgp router-id 10.0.12.2
 no bgp ebgp-requires-policy
 neighbor 10.0.12.1 remote-as 65001
 address-family ipv4 unicast
  network 10.77.1.1/32 route-map TAG
 exit-address-family
!
`

// TestLabTwoRouters builds two namespaces joined by a veth pair, runs FRR in
// both with an eBGP session, checks routes are exchanged and installed, then
// checks that Close leaves nothing behind.
func TestLabTwoRouters(t *testing.T) {
	l := ForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	r1, err := l.Netns("r1")
	require.NoError(t, err)
	r2, err := l.Netns("r2")
	require.NoError(t, err)
	assert.Equal(t, l.Prefix()+"-r1", r1.Name())
	_, err = l.Netns("r1")
	require.Error(t, err, "a namespace name is usable once per lab")

	require.NoError(t, l.Link(r1, "eth0", "10.0.12.1/30", r2, "eth0", "10.0.12.2/30"))
	out, err := r1.Exec(ctx, "ping", "-c", "2", "-W", "1", "10.0.12.2")
	require.NoError(t, err)
	assert.Contains(t, out, "2 received")
	fwd, err := r2.Exec(ctx, "cat", "/proc/sys/net/ipv4/ip_forward")
	require.NoError(t, err)
	assert.Equal(t, "1", strings.TrimSpace(fwd))

	// Nothing of the lab shows up in the root namespace.
	rootAddrs, err := exec.CommandContext(ctx, "ip", "-o", "addr").CombinedOutput()
	require.NoError(t, err)
	assert.NotContains(t, string(rootAddrs), "10.0.12.")

	f1, err := l.StartFRR(r1, "r1", r1Conf, "zebra", "bgpd", "staticd")
	require.NoError(t, err)
	f2, err := l.StartFRR(r2, "r2", r2Conf) // zebra, bgpd
	require.NoError(t, err)

	pctx, pcancel := context.WithTimeout(ctx, 60*time.Second)
	defer pcancel()
	err = Poll(pctx, 200*time.Millisecond, func() (bool, error) {
		nbrs, err := f1.Neighbors(pctx)
		if err != nil {
			return false, err
		}
		n, ok := nbrs["10.0.12.2"]
		if !ok || n.State != "Established" || n.PrefixesReceived < 1 {
			return false, errors.New("r1: peer 10.0.12.2 not Established with a prefix: " + n.State)
		}
		routes, err := f2.BGPPrefixes(pctx)
		if err != nil {
			return false, err
		}
		if _, ok := routes["10.99.0.0/16"]; !ok {
			return false, errors.New("r2: 10.99.0.0/16 not received")
		}
		return true, nil
	})
	require.NoError(t, err, "BGP between r1 and r2\n%s\n%s", f1.LogTail(30), f2.LogTail(30))

	routes, err := f1.BGPPrefixes(ctx)
	require.NoError(t, err)
	got := routes["10.77.1.1/32"]
	assert.True(t, got.Valid && got.Best, "%+v", got)
	assert.Equal(t, "65002", got.ASPath)
	assert.Equal(t, uint32(50), got.MED)
	assert.Equal(t, []string{"10.0.12.2"}, got.NextHops)
	paths, err := f1.BGPPrefix(ctx, "10.77.1.1/32")
	require.NoError(t, err)
	require.Len(t, paths, 1)
	assert.Equal(t, []string{"65002:100"}, paths[0].Communities)

	// zebra installed the BGP route in r1's kernel table: r2's loopback answers.
	kroute, err := r1.IP(ctx, "route", "show", "10.77.1.1/32")
	require.NoError(t, err)
	assert.Contains(t, kroute, "proto bgp")
	_, err = r1.Exec(ctx, "ping", "-c", "2", "-W", "1", "10.77.1.1")
	require.NoError(t, err)

	// A tracked long-running process, and one that is signalled and waited for.
	sleeper, err := l.Start(r2, "sleep.log", "sleep", "600")
	require.NoError(t, err)
	short, err := l.Start(r1, "short.log", "sleep", "600")
	require.NoError(t, err)
	require.NoError(t, short.Signal(syscall.SIGTERM))
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	assert.ErrorContains(t, short.Wait(wctx), "signal: terminated")

	instances := []string{f1.Name(), f2.Name()}
	require.NoError(t, l.Close())

	nsList, err := exec.CommandContext(ctx, "ip", "netns", "list").CombinedOutput()
	require.NoError(t, err)
	assert.NotContains(t, string(nsList), l.Prefix())
	for _, inst := range instances {
		out, err := exec.CommandContext(ctx, "pgrep", "-af", "--", "-N "+inst).CombinedOutput()
		var ee *exec.ExitError
		assert.True(t, errors.As(err, &ee) && ee.ExitCode() == 1, "frr %s still running: %s (%v)", inst, out, err)
		_, err = os.Stat(filepath.Join("/var/run/frr", inst))
		assert.True(t, os.IsNotExist(err), "/var/run/frr/%s left behind", inst)
	}
	assert.True(t, sleeper.Exited())
	_, err = os.Stat(l.Dir())
	assert.True(t, os.IsNotExist(err), "temp dir left behind")
	assert.NoError(t, l.Close(), "Close is idempotent")
	_, err = l.Netns("late")
	assert.Error(t, err, "no new namespaces after Close")
}

func TestPollReportsLastError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	calls := 0
	err := Poll(ctx, 10*time.Millisecond, func() (bool, error) {
		calls++
		return false, errors.New("peer still Active")
	})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorContains(t, err, "peer still Active")
	assert.Greater(t, calls, 1)

	n := 0
	require.NoError(t, Poll(context.Background(), time.Millisecond, func() (bool, error) {
		n++
		return n == 3, nil
	}))
}

// TestAutogroupOff: off while the lab runs, then back as it was.
func TestAutogroupOff(t *testing.T) {
	before, err := os.ReadFile(autogroupPath)
	require.NoError(t, err, "this kernel has autogroup scheduling (CONFIG_SCHED_AUTOGROUP)")
	restore, err := AutogroupOff()
	require.NoError(t, err)
	restored := false
	t.Cleanup(func() {
		if !restored {
			_ = restore()
		}
	})
	now, err := os.ReadFile(autogroupPath)
	require.NoError(t, err)
	assert.Equal(t, "0", strings.TrimSpace(string(now)))
	// Off already: the inner restore leaves it off.
	inner, err := AutogroupOff()
	require.NoError(t, err)
	require.NoError(t, inner())
	now, err = os.ReadFile(autogroupPath)
	require.NoError(t, err)
	assert.Equal(t, "0", strings.TrimSpace(string(now)))
	require.NoError(t, restore())
	restored = true
	after, err := os.ReadFile(autogroupPath)
	require.NoError(t, err)
	assert.Equal(t, string(before), string(after))
}
