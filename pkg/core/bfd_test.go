package core

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBFDDecidesAtOnce: a BFD event changes the output by itself, with no
// Tick in between (the transcripts and the random test tick before every
// output): a counted Down withdraws and decides a reset at once, AdminDown
// lets the tunnel back in after the hold-down of its flap.
func TestBFDDecidesAtOnce(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := New(loadConfig(t, "active-standby"), now)
	c.SessionState(now, "t1", true, nil)
	c.BFD(now, BFDEvent{Peer: "t1", Old: BFDDown, New: BFDUp, Remote: BFDUp})
	require.NotEmpty(t, c.Output(now).Announcements["t1"])

	now = now.Add(time.Second)
	c.BFD(now, BFDEvent{Peer: "t1", Old: BFDUp, New: BFDDown, Remote: BFDDown, Diag: "Path Down"})
	out := c.Output(now)
	require.Empty(t, out.Announcements["t1"])
	require.Equal(t, map[string]Reset{"t1": {Gen: 1, Reason: "BFD down: Path Down"}}, out.Resets)

	now = now.Add(time.Second)
	c.BFD(now, BFDEvent{Peer: "t1", Old: BFDDown, New: BFDDown, Remote: BFDAdminDown})
	require.Empty(t, c.Output(now).Announcements["t1"], "hold-down of the flap")
	now = now.Add(c.cfg.HoldDown.Initial)
	c.Tick(now)
	require.NotEmpty(t, c.Output(now).Announcements["t1"])
}

// TestParseBFD: the transcripts' bfd event and its defaults.
func TestParseBFD(t *testing.T) {
	for _, tc := range []struct {
		line string
		want BFDEvent
	}{
		{"t1 down", BFDEvent{Peer: "t1", Old: BFDUp, New: BFDDown, Remote: BFDDown, Diag: "Control Detection Time Expired"}},
		{"t1 up", BFDEvent{Peer: "t1", Old: BFDDown, New: BFDUp, Remote: BFDUp, Diag: "Control Detection Time Expired"}},
		{"rr down from init remote admindown diag Neighbor Signaled Session Down",
			BFDEvent{Peer: "rr", Old: BFDInit, New: BFDDown, Remote: BFDAdminDown, Diag: "Neighbor Signaled Session Down"}},
	} {
		got, err := parseBFD(strings.Fields(tc.line))
		require.NoError(t, err, tc.line)
		require.Equal(t, tc.want, got, tc.line)
	}
	for _, bad := range []string{"t1", "t1 sideways", "t1 down from", "t1 down remote nope", "t1 down via x"} {
		_, err := parseBFD(strings.Fields(bad))
		require.Error(t, err, bad)
	}
}

// TestBFDRenamedPeer: a reload that renames a tunnel but keeps its BFD
// session (same addresses) keeps what the session reported under the new
// name, so its first Down after the reload counts; the old name is
// forgotten.
func TestBFDRenamedPeer(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := loadConfig(t, "active-active")
	c := New(cfg, now)
	c.SessionState(now, "t1", true, nil)
	c.BFD(now, BFDEvent{Peer: "t1", Old: BFDDown, New: BFDUp, Remote: BFDUp})

	renamed := *cfg
	renamed.Tunnels = slices.Clone(cfg.Tunnels)
	renamed.Tunnels[0].Name = "t1b"
	now = now.Add(time.Second)
	c.Reconfigure(now, &renamed)
	c.SessionState(now, "t1b", true, nil)
	c.BFD(now, BFDEvent{Peer: "t1b", Old: BFDUp, New: BFDDown, Remote: BFDDown, Diag: "Path Down"})
	out := c.Output(now)
	require.Equal(t, Reset{Gen: 1, Reason: "BFD down: Path Down"}, out.Resets["t1b"], "the Down after the rename counts")
	require.Empty(t, out.Announcements["t1b"])
	_, old := out.Resets["t1"]
	require.False(t, old)
}
