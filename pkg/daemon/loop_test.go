package daemon

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/bgpgw/bgpgw/pkg/bgp"
	"github.com/bgpgw/bgpgw/pkg/core"
)

func withAttrs(attrs bgp.Announcement, prefixes ...string) []bgp.Announcement {
	var out []bgp.Announcement
	for _, p := range prefixes {
		a := attrs
		a.Prefix = netip.MustParsePrefix(p)
		out = append(out, a)
	}
	return out
}

// TestLogAnnouncements: one line per peer whose announcements changed,
// with stable keys and the reason; nothing for unchanged peers.
func TestLogAnnouncements(t *testing.T) {
	var buf bytes.Buffer
	d := &Daemon{log: slog.New(slog.NewTextHandler(&buf, nil))}
	plain := bgp.Announcement{}
	prev := core.Output{Drain: core.Normal, InstanceOK: true,
		Tunnels: []core.TunnelStatus{{Name: "t1", Carrying: true}, {Name: "t2", Carrying: true}},
		Announcements: map[string][]bgp.Announcement{
			"t1": withAttrs(plain, "10.10.0.0/16", "10.20.0.0/24"),
			"t2": withAttrs(plain, "10.10.0.0/16"),
			"rr": withAttrs(plain, "10.1.0.0/16"),
		}}
	out := prev
	out.Tunnels = []core.TunnelStatus{{Name: "t1", Reason: "BFD down"}, {Name: "t2", Carrying: true}}
	out.Announcements = map[string][]bgp.Announcement{
		"t1": nil,
		"t2": withAttrs(plain, "10.10.0.0/16"),
		"rr": withAttrs(plain, "10.1.0.0/16", "10.1.2.0/24"),
	}
	d.logAnnouncements(prev, out)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	assert.Len(t, lines, 2, buf.String())
	assert.Contains(t, lines[0], `msg="announcements changed" peer=rr reason="learned routes changed" announced=10.1.2.0/24 prefix=10.1.2.0/24`)
	assert.Contains(t, lines[1], `peer=t1 reason="BFD down" withdrawn="10.10.0.0/16 10.20.0.0/24"`)

	// A drain re-announces with other attributes; long lists are cut.
	buf.Reset()
	many := make([]string, 20)
	for i := range many {
		many[i] = fmt.Sprintf("10.10.%d.0/24", i)
	}
	prev.Announcements = map[string][]bgp.Announcement{"t2": withAttrs(plain, many...)}
	out.Drain = core.Draining
	out.Announcements = map[string][]bgp.Announcement{"t2": withAttrs(bgp.Announcement{Prepend: 3}, many...)}
	d.logAnnouncements(prev, out)
	assert.Contains(t, buf.String(), `peer=t2 reason="drain: draining" updated="10.10.0.0/24`)
	assert.Contains(t, buf.String(), "and 4 more")
}
