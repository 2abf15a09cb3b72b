package lab

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func readBIRD(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	require.NoError(t, err)
	return string(data)
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestParseBIRDRoutesExport: the merged (ECMP) route BIRD exports to the
// kernel, and the same after one gateway's session went down.
func TestParseBIRDRoutesExport(t *testing.T) {
	rs, err := ParseBIRDRoutes(readBIRD(t, "bird2_route_for_export.txt"))
	require.NoError(t, err)
	require.Len(t, rs, 1)
	assert.Equal(t, BIRDRoute{Table: "master4", Prefix: netip.MustParsePrefix("10.10.0.0/16"), Type: "unicast",
		Protocol: "gw1", Since: "17:27:59.809", Primary: true, Preference: 100, Info: "[AS65515i]",
		NextHops: []BIRDNextHop{{Via: addr("169.254.21.1"), Iface: "t1", Weight: 1}, {Via: addr("169.254.22.1"), Iface: "t2", Weight: 1}},
	}, rs[0])

	rs, err = ParseBIRDRoutes(readBIRD(t, "bird2_route_for_export_one.txt"))
	require.NoError(t, err)
	require.Len(t, rs, 1)
	assert.Equal(t, "gw1", rs[0].Protocol)
	assert.Equal(t, []BIRDNextHop{{Via: addr("169.254.21.1"), Iface: "t1"}}, rs[0].NextHops, "one path: no weight printed")

	for _, none := range []string{readBIRD(t, "bird2_route_not_found.txt"), "BIRD 2.0.12 ready.\n", "BIRD 2.0.12 ready.", ""} {
		rs, err := ParseBIRDRoutes(none)
		require.NoError(t, err, "%q", none)
		assert.Empty(t, rs)
	}
}

// TestParseBIRDRoutesAll: every route of the table with its attributes;
// a prefix's second route is on an indented line of its own.
func TestParseBIRDRoutesAll(t *testing.T) {
	rs, err := ParseBIRDRoutes(readBIRD(t, "bird2_route_all.txt"))
	require.NoError(t, err)
	require.Len(t, rs, 7)
	var gw1, gw2 BIRDRoute
	for _, r := range rs {
		if r.Prefix.String() == "10.10.0.0/16" {
			switch r.Protocol {
			case "gw1":
				gw1 = r
			case "gw2":
				gw2 = r
			}
		}
	}
	assert.True(t, gw1.Primary)
	assert.False(t, gw2.Primary)
	assert.Equal(t, "65515", gw2.Attrs["BGP.as_path"])
	assert.Equal(t, "169.254.22.1", gw2.Attrs["BGP.next_hop"])
	assert.Equal(t, []BIRDNextHop{{Via: addr("169.254.22.1"), Iface: "t2"}}, gw2.NextHops)

	static := rs[2]
	assert.Equal(t, "10.1.0.0/16", static.Prefix.String())
	assert.Equal(t, "blackhole", static.Type)
	assert.Equal(t, 200, static.Preference)
	assert.Empty(t, static.NextHops)
	direct := rs[5]
	assert.Equal(t, []BIRDNextHop{{Iface: "t2"}}, direct.NextHops)
	assert.False(t, direct.NextHops[0].Via.IsValid())
}

func TestParseBIRDRoutesErrors(t *testing.T) {
	for _, bad := range []string{
		"syntax error, unexpected CF_SYM_UNDEFINED, expecting CF_SYM_KNOWN or TABLE\n",
		"No such command. Press `?' for help.\n",
		"Unable to connect to server control socket (x.ctl): No such file or directory\n",
		"Table master4:\n\tvia 10.0.0.1 on eth0\n",
		"Table master4:\n10.0.0.0/33 unicast [x 1] * (100)\n",
		"Table master4:\n10.0.0.0/8 unicast x * (100)\n",
		"Table master4:\n10.0.0.0/8 unicast [x 1] * 100\n",
		"Table master4:\n10.0.0.0/8 unicast [x 1] * (-1)\n",
		"Table master4:\n10.0.0.0/8 unicast [x 1] * (1)\n\tvia 10.0.0.300 on eth0\n",
		"Table master4:\n10.0.0.0/8 unicast [x 1] * (1)\n\tvia 10.0.0.1 on eth0 weight x\n",
		"Table master4:\n10.0.0.0/8 unicast [x 1] * (1)\n\tsomething else\n",
		"Table master4:\n   unicast [x 1] * (1)\n",
	} {
		_, err := ParseBIRDRoutes(bad)
		assert.Error(t, err, "%q", bad)
	}
}

func TestParseBIRDProtocols(t *testing.T) {
	ps, err := ParseBIRDProtocols(readBIRD(t, "bird2_protocols_all.txt"))
	require.NoError(t, err)
	require.Len(t, ps, 7)
	byName := map[string]BIRDProtocol{}
	for _, p := range ps {
		byName[p.Name] = p
	}
	gw1 := byName["gw1"]
	assert.True(t, gw1.Established())
	assert.Equal(t, "Established", gw1.BGPState)
	assert.Equal(t, addr("169.254.21.1"), gw1.NeighborAddress)
	assert.Equal(t, uint32(65515), gw1.NeighborAS)
	assert.Equal(t, uint32(65010), gw1.LocalAS)
	assert.Equal(t, "169.254.21.1", gw1.NeighborID)
	assert.Equal(t, []BIRDChannel{{Name: "ipv4", State: "UP", Imported: 2, Exported: 1, Preferred: 2}}, gw1.Channels)

	gw2 := byName["gw2"]
	assert.False(t, gw2.Established())
	assert.Equal(t, "start", gw2.State)
	assert.Equal(t, "Idle          Error: BFD session down", gw2.Info)
	assert.Equal(t, "Idle", gw2.BGPState)
	assert.Equal(t, "Error: BFD session down", gw2.LastError)
	assert.Equal(t, addr("169.254.22.1"), gw2.NeighborAddress)
	assert.Equal(t, []BIRDChannel{{Name: "ipv4", State: "DOWN"}}, gw2.Channels)

	k := byName["kernel4"]
	assert.Equal(t, "Kernel", k.Proto)
	assert.Equal(t, "master4", k.Table)
	assert.Equal(t, 2, k.Channels[0].Exported)
	assert.False(t, k.Established())
	assert.Empty(t, byName["device1"].Info)

	// Without "all": the table only.
	short, err := ParseBIRDProtocols(readBIRD(t, "bird2_protocols.txt"))
	require.NoError(t, err)
	require.Len(t, short, 7)
	for i, p := range short {
		assert.Equal(t, ps[i].Name, p.Name)
		assert.Equal(t, ps[i].Info, p.Info, p.Name)
		assert.Equal(t, ps[i].Established(), p.Established(), p.Name)
	}

	for _, bad := range []string{
		"gw1 BGP --- up 1 Established\n",
		"Name Proto Table State Since Info\n  BGP state: Established\n",
		"Name Proto Table State Since Info\ngw1 BGP ---\n",
		"Name Proto Table State Since Info\ngw1 BGP --- up 1\n    Neighbor address: 169.254.21\n",
		"Name Proto Table State Since Info\ngw1 BGP --- up 1\n    Neighbor AS: 4294967296\n",
		"Name Proto Table State Since Info\ngw1 BGP --- up 1\n  Channel ipv4\n    Routes: 2 imported, x exported\n",
		"No such protocol gw9\n",
	} {
		_, err := ParseBIRDProtocols(bad)
		assert.Error(t, err, "%q", bad)
	}
}

func TestParseBIRDBFDSessions(t *testing.T) {
	ss, err := ParseBIRDBFDSessions(readBIRD(t, "bird2_bfd_sessions.txt"))
	require.NoError(t, err)
	assert.Equal(t, []BIRDBFDSession{
		{Protocol: "bfd1", Address: addr("169.254.22.1"), Interface: "t2", State: "Down", Since: "17:29:28.677", Interval: time.Second},
		{Protocol: "bfd1", Address: addr("169.254.21.1"), Interface: "t1", State: "Up", Since: "17:27:54.160",
			Interval: 100 * time.Millisecond, Timeout: 300 * time.Millisecond},
	}, ss)
	ss, err = ParseBIRDBFDSessions("bfd1:\nIP address                Interface  State      Since         Interval  Timeout\n")
	require.NoError(t, err)
	assert.Empty(t, ss)
	for _, bad := range []string{
		"169.254.21.1 t1 Up 1 0.100 0.300\n",
		"bfd1:\n169.254.21.1 t1 Up 1 0.100\n",
		"bfd1:\n169.254.21.x t1 Up 1 0.100 0.300\n",
		"bfd1:\n169.254.21.1 t1 Up 1 fast 0.300\n",
		"bfd1:\n169.254.21.1 t1 Up 1 0.100 -1\n",
		"Not a BFD protocol\n",
	} {
		_, err := ParseBIRDBFDSessions(bad)
		assert.Error(t, err, "%q", bad)
	}
}

func TestStripBirdcBanner(t *testing.T) {
	assert.Equal(t, "Table master4:\n", StripBirdcBanner("BIRD 2.0.12 ready.\nTable master4:\n"))
	assert.Equal(t, "", StripBirdcBanner("BIRD 2.0.12 ready."))
	assert.Equal(t, "Table master4:\n", StripBirdcBanner("Table master4:\n"))
}

// FuzzParseBIRD feeds arbitrary text to the birdc parsers: they never
// panic, and what they accept holds what the suite and the tests rely on
// (valid prefixes and addresses, named protocols, no negative counts or
// durations).
func FuzzParseBIRD(f *testing.F) {
	for _, name := range []string{"bird2_route_for_export.txt", "bird2_route_all.txt", "bird2_protocols_all.txt",
		"bird2_protocols.txt", "bird2_bfd_sessions.txt", "bird2_route_not_found.txt"} {
		if data, err := os.ReadFile("testdata/" + name); err == nil {
			f.Add(string(data))
		}
	}
	f.Fuzz(func(t *testing.T, text string) {
		if rs, err := ParseBIRDRoutes(text); err == nil {
			for _, r := range rs {
				if !r.Prefix.IsValid() || r.Protocol == "" || r.Type == "" || r.Preference < 0 {
					t.Fatalf("accepted route %+v from %q", r, text)
				}
				for _, nh := range r.NextHops {
					if nh.Iface == "" || nh.Weight < 0 {
						t.Fatalf("accepted next hop %+v from %q", nh, text)
					}
				}
			}
		}
		if ps, err := ParseBIRDProtocols(text); err == nil {
			for _, p := range ps {
				if p.Name == "" || p.Proto == "" {
					t.Fatalf("accepted protocol %+v from %q", p, text)
				}
				for _, c := range p.Channels {
					if c.Imported < 0 || c.Exported < 0 || c.Preferred < 0 {
						t.Fatalf("accepted channel %+v from %q", c, text)
					}
				}
			}
		}
		if ss, err := ParseBIRDBFDSessions(text); err == nil {
			for _, s := range ss {
				if !s.Address.IsValid() || s.Protocol == "" || s.Interval < 0 || s.Timeout < 0 {
					t.Fatalf("accepted session %+v from %q", s, text)
				}
			}
		}
	})
}
