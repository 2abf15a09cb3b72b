package lab

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	trafficAddrA = "10.0.31.1"
	trafficAddrB = "10.0.31.2"
	trafficPort  = 5000
	trafficFlows = 4
)

// trafficLab builds two namespaces joined by a veth pair and the probe.
func trafficLab(t *testing.T, ctx context.Context) (l *Lab, a, b *Netns, bin string) {
	t.Helper()
	l = ForTest(t)
	a, err := l.Netns("a")
	require.NoError(t, err)
	b, err = l.Netns("b")
	require.NoError(t, err)
	require.NoError(t, l.Link(a, "eth0", trafficAddrA+"/30", b, "eth0", trafficAddrB+"/30"))
	bin, err = BuildUDPProbe(ctx, t.TempDir())
	require.NoError(t, err)
	return l, a, b, bin
}

// bothWays starts probe traffic a -> b and b -> a.
func bothWays(t *testing.T, ctx context.Context, l *Lab, a, b *Netns, bin string, d time.Duration) (ab, ba *Flows) {
	t.Helper()
	ab, err := l.StartTraffic(ctx, bin, a, b, trafficAddrB, trafficPort, trafficFlows, time.Millisecond, d)
	require.NoError(t, err)
	ba, err = l.StartTraffic(ctx, bin, b, a, trafficAddrA, trafficPort, trafficFlows, time.Millisecond, d)
	require.NoError(t, err)
	return ab, ba
}

func stopTraffic(t *testing.T, ctx context.Context, f *Flows) TrafficReport {
	t.Helper()
	rep, err := f.Stop(ctx)
	require.NoError(t, err)
	t.Log(rep)
	require.Len(t, rep.Flows, trafficFlows)
	locals := map[string]bool{}
	for _, fl := range rep.Flows {
		locals[fl.Local] = true
		assert.True(t, fl.FinReceived, "flow %d: fin", fl.Flow)
		assert.Equal(t, trafficPort+fl.Flow, fl.DstPort)
		assert.Zero(t, fl.Duplicates, "flow %d", fl.Flow)
		assert.Positive(t, fl.Sent, "flow %d", fl.Flow)
		// What the probe guarantees whatever the machine's load: every
		// datagram sent is received or counted lost.
		assert.Equal(t, fl.Sent, fl.Received+fl.Lost, "flow %d: sent = received + lost", fl.Flow)
		assert.LessOrEqual(t, fl.ProbeDrops, fl.Lost, "flow %d: socket drops are among the lost", fl.Flow)
	}
	assert.Len(t, locals, trafficFlows, "each flow has its own source port")
	return rep
}

// TestTrafficNoLoss: 4 flows each way for 2 s at 1 ms over a veth pair: the
// network (the veth) loses nothing. How many datagrams the sender managed to
// send depends on the machine's load and is not asserted; a datagram the
// receiver's own socket dropped (it was not scheduled in time) is the
// probe's loss, counted apart.
func TestTrafficNoLoss(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, a, b, bin := trafficLab(t, ctx)
	ab, ba := bothWays(t, ctx, l, a, b, bin, 2*time.Second)

	for _, f := range []*Flows{ab, ba} {
		rep := stopTraffic(t, ctx, f)
		for _, fl := range rep.Flows {
			assert.Zero(t, fl.SendErrors, "flow %d", fl.Flow)
			assert.LessOrEqual(t, fl.Lost, fl.ProbeDrops, "flow %d: the veth lost nothing (every missing datagram is among the receiver socket's own drops)", fl.Flow)
			if fl.ProbeDrops == 0 {
				assert.Zero(t, fl.LongestGap, "flow %d", fl.Flow)
			}
		}
		assert.LessOrEqual(t, rep.Lost, rep.ProbeDrops)
		assert.Equal(t, rep.Sent, rep.Received+rep.Lost)
	}
}

// TestTrafficFinish ends traffic meant to run for a minute as soon as it
// flows: Finish stops the senders at once, they send their fins and
// report, and every datagram sent is received (the veth loses nothing) or
// among the receiver socket's own drops.
func TestTrafficFinish(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, a, b, bin := trafficLab(t, ctx)
	ab, ba := bothWays(t, ctx, l, a, b, bin, time.Minute)
	require.NoError(t, ab.WaitReceiving(ctx))
	require.NoError(t, ba.WaitReceiving(ctx))
	for _, f := range []*Flows{ab, ba} {
		rep, err := f.Finish(ctx)
		require.NoError(t, err)
		t.Log(rep)
		require.Len(t, rep.Flows, trafficFlows)
		for _, fl := range rep.Flows {
			assert.True(t, fl.FinReceived, "flow %d: fin", fl.Flow)
			assert.Positive(t, fl.Sent, "flow %d", fl.Flow)
			assert.Less(t, fl.Sent, 30000, "flow %d: ended long before its minute (1 ms apart)", fl.Flow)
			assert.Equal(t, fl.Sent, fl.Received+fl.Lost, "flow %d: sent = received + lost", fl.Flow)
			assert.LessOrEqual(t, fl.Lost, fl.ProbeDrops, "flow %d", fl.Flow)
		}
		again, err := f.Stop(ctx)
		require.NoError(t, err)
		assert.Equal(t, rep, again, "Stop after Finish returns the same report")
	}
}

// TestTrafficOutage blackholes a -> b for about 300 ms in the middle of a run:
// every a -> b flow reports one outage of that length, b -> a loses nothing,
// and closing the lab leaves nothing behind.
func TestTrafficOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, a, b, bin := trafficLab(t, ctx)
	ab, ba := bothWays(t, ctx, l, a, b, bin, 3*time.Second)
	require.NoError(t, ab.WaitReceiving(ctx))
	require.NoError(t, ba.WaitReceiving(ctx))

	// The blackhole is in place at least from addDone to delStart and at
	// most from addStart to delDone.
	addStart := time.Now()
	_, err := a.IP(ctx, "route", "replace", "blackhole", trafficAddrB+"/32")
	require.NoError(t, err)
	addDone := time.Now()
	// Not waiting for a state: this fixed 300 ms *is* the outage the probe
	// must measure; it also ends early if the test's context does.
	outage := time.NewTimer(300 * time.Millisecond)
	select {
	case <-outage.C:
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	delStart := time.Now()
	_, err = a.IP(ctx, "route", "del", "blackhole", trafficAddrB+"/32")
	require.NoError(t, err)
	delDone := time.Now()
	route, err := a.IP(ctx, "route", "get", trafficAddrB)
	require.NoError(t, err)
	assert.Contains(t, route, "dev eth0")

	rep := stopTraffic(t, ctx, ab)
	// The measured outage (from the send times around the gap) lies within
	// the blackhole's bounds, widened by the sender's worst lateness (a late
	// sender sends nothing for that long, before or after the blackhole) and
	// two intervals of the probe's resolution.
	slack := rep.SenderMaxLate + 2*rep.Interval
	inner, outer := delStart.Sub(addDone)-slack, delDone.Sub(addStart)+slack
	t.Logf("blackhole between %v and %v; outage bounds %v .. %v", delStart.Sub(addDone), delDone.Sub(addStart), inner, outer)
	// A sender late by more than the blackhole may have sent nothing into
	// it: the run measured nothing, which must not pass as a measurement.
	require.Positive(t, inner, "the sender was late by %v, longer than the blackhole: nothing measured", rep.SenderMaxLate)
	for _, fl := range rep.Flows {
		assert.Positive(t, fl.Lost, "flow %d", fl.Flow)
		assert.GreaterOrEqual(t, fl.OutageMeasured, inner, "flow %d", fl.Flow)
		assert.LessOrEqual(t, fl.OutageMeasured, outer, "flow %d", fl.Flow)
		if fl.ProbeDrops == 0 { // else the socket's own drops make gaps of their own
			assert.Equal(t, 1, fl.Gaps, "flow %d: one outage", fl.Flow)
			assert.Equal(t, fl.Lost, fl.LongestGap, "flow %d: all loss in the outage", fl.Flow)
		}
		assert.False(t, fl.LongestGapStart.IsZero())
		assert.True(t, !fl.LongestGapStart.Before(addStart.Add(-slack)) && !fl.LongestGapStart.After(delDone),
			"flow %d: outage starts at %v, blackhole from %v to %v", fl.Flow, fl.LongestGapStart, addStart, delDone)
	}
	assert.Positive(t, rep.MaxOutage)
	back := stopTraffic(t, ctx, ba)
	assert.LessOrEqual(t, back.Lost, back.ProbeDrops, "b -> a was not cut (every missing datagram is among the receiver socket's own drops)")
	again, err := ab.Stop(ctx)
	require.NoError(t, err)
	assert.Equal(t, rep, again, "Stop twice returns the same report")

	require.NoError(t, l.Close())
	for _, p := range []*Process{ab.Send, ab.Recv, ba.Send, ba.Recv} {
		assert.True(t, p.Exited(), p.name)
	}
	nsList, err := exec.CommandContext(ctx, "ip", "netns", "list").CombinedOutput()
	require.NoError(t, err)
	assert.NotContains(t, string(nsList), l.Prefix())
	out, err := exec.CommandContext(ctx, "pgrep", "-af", "--", l.Dir()).CombinedOutput()
	var ee *exec.ExitError
	assert.True(t, errors.As(err, &ee) && ee.ExitCode() == 1, "probe processes left: %s (%v)", out, err)
	_, err = os.Stat(l.Dir())
	assert.True(t, os.IsNotExist(err), "temp dir left behind")
}
