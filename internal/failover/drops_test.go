package failover

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const snmpSample = `Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 1000
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 40 0 491 532 25 3 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 0 0 0 0 0
`

const netDevSample = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:   49193     529    0    0    0     0          0         0    49193     529    0    0    0     0       0          0
ipsec0: 1000 10 0 2 0 0 0 0 2000 20 0 7 0 0 0 0
`

const softnetSample = `003e2d8f 00000000 00000003 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000
003792b4 0000001a 00000002 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001 00000000 00000000
`

func TestParseCounters(t *testing.T) {
	u, err := parseSNMPUDP(snmpSample)
	require.NoError(t, err)
	assert.Equal(t, counters{"udp-rcvbuf": 25, "udp-sndbuf": 3}, u)
	d, err := parseNetDev(netDevSample)
	require.NoError(t, err)
	assert.Equal(t, counters{"lo rx-drop": 0, "lo tx-drop": 0, "ipsec0 rx-drop": 2, "ipsec0 tx-drop": 7}, d)
	s, err := parseSoftnet(softnetSample)
	require.NoError(t, err)
	assert.Equal(t, counters{"backlog-drop": 26}, s)

	for _, bad := range []string{"", "Udp: RcvbufErrors\n", "Udp: RcvbufErrors\nUdp: x\n", "Udp: A B\nUdp: 1\n"} {
		_, err := parseSNMPUDP(bad)
		assert.Error(t, err, "%q", bad)
	}
	for _, bad := range []string{"eth0: 1 2 3\n", "eth0: 1 2 3 x 5 6 7 8 9 10 11 12 13 14 15 16\n", ": 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"} {
		_, err := parseNetDev(bad)
		assert.Error(t, err, "%q", bad)
	}
	for _, bad := range []string{"00ff\n", "00ff zz\n"} {
		_, err := parseSoftnet(bad)
		assert.Error(t, err, "%q", bad)
	}
}

func TestDelta(t *testing.T) {
	before := counters{"gw1 udp-rcvbuf": 5, "gw2 ipsec0 tx-drop": 1, "gw1 ipsec0 tx-drop": 9}
	// gw1's ipsec0 was created again (charon restarted): its 2 count.
	after := counters{"gw1 udp-rcvbuf": 5, "gw2 ipsec0 tx-drop": 4, "gw1 ipsec0 tx-drop": 2, "gw3 ipsec0 rx-drop": 2}
	d := delta(before, after)
	assert.Equal(t, map[string]int64{"gw2 ipsec0 tx-drop": 3, "gw3 ipsec0 rx-drop": 2, "gw1 ipsec0 tx-drop": 2}, d)
	assert.Equal(t, "gw1 ipsec0 tx-drop 2, gw2 ipsec0 tx-drop 3, gw3 ipsec0 rx-drop 2", FormatDrops(d))
	assert.Empty(t, FormatDrops(nil))
}

// FuzzParseCounters: the /proc parsers never panic, and what they accept
// is non-negative where the kernel's counters are.
func FuzzParseCounters(f *testing.F) {
	for _, s := range []string{snmpSample, netDevSample, softnetSample, "", "Udp: a\nUdp: 1\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		_, _ = parseSNMPUDP(text)
		_, _ = parseNetDev(text)
		if c, err := parseSoftnet(text); err == nil && c["backlog-drop"] < 0 {
			t.Fatalf("negative backlog drops from %q", text)
		}
	})
}
