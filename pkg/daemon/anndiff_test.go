package daemon

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/bgpgw/bgpgw/pkg/bgp"
)

// TestAnnouncementDiff: the fast cases (all added, all withdrawn, nothing
// changed) and the general one give what the log says.
func TestAnnouncementDiff(t *testing.T) {
	a := func(p string, prepend int) bgp.Announcement {
		return bgp.Announcement{Prefix: netip.MustParsePrefix(p), Prepend: prepend}
	}
	ps := func(l ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, p := range l {
			out = append(out, netip.MustParsePrefix(p))
		}
		return out
	}
	x, y, z := a("10.1.0.0/16", 0), a("10.2.0.0/16", 0), a("10.3.0.0/16", 0)
	for _, c := range []struct {
		name                      string
		was, now                  []bgp.Announcement
		added, withdrawn, changed []netip.Prefix
	}{
		{"all added", nil, []bgp.Announcement{x, y}, ps("10.1.0.0/16", "10.2.0.0/16"), nil, nil},
		{"all withdrawn", []bgp.Announcement{x, y}, nil, nil, ps("10.1.0.0/16", "10.2.0.0/16"), nil},
		{"unchanged", []bgp.Announcement{x, y}, []bgp.Announcement{x, y}, nil, nil, nil},
		{"mixed", []bgp.Announcement{x, y}, []bgp.Announcement{a("10.2.0.0/16", 3), z}, ps("10.3.0.0/16"), ps("10.1.0.0/16"), ps("10.2.0.0/16")},
		{"reordered", []bgp.Announcement{x, y}, []bgp.Announcement{y, x}, nil, nil, nil},
	} {
		added, withdrawn, changed := announcementDiff(c.was, c.now)
		assert.Equal(t, c.added, added, c.name)
		assert.Equal(t, c.withdrawn, withdrawn, c.name)
		assert.Equal(t, c.changed, changed, c.name)
	}
}
