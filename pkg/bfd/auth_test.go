package bfd

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func withAuth(c SessionConfig, t AuthType, keyID uint8, key string) SessionConfig {
	c.Auth = &AuthConfig{Type: t, KeyID: keyID, Key: []byte(key)}
	return c
}

// TestAuthBringUp: both SHA1 types bring the session up; every packet
// carries the section, signed, with the sequence number growing by one.
func TestAuthBringUp(t *testing.T) {
	for _, typ := range []AuthType{AuthKeyedSHA1, AuthMeticulousKeyedSHA1} {
		t.Run(typ.String(), func(t *testing.T) {
			p := newPair(t, withAuth(cfgA(), typ, 5, "secret-a-b"), withAuth(cfgB(), typ, 5, "secret-a-b"))
			p.bringUp()
			p.runFor(2 * time.Second)
			assert.True(t, p.bothUp())
			for i, s := range p.a.sent {
				assert.Equal(t, typ, s.pkt.Auth.Type)
				assert.Equal(t, uint8(5), s.pkt.Auth.KeyID)
				require.NoError(t, VerifySHA1(s.wire, []byte("secret-a-b")))
				require.ErrorIs(t, VerifySHA1(s.wire, []byte("secret-a-c")), ErrBadDigest)
				if i > 0 {
					assert.Equal(t, p.a.sent[i-1].pkt.Auth.Seq+1, s.pkt.Auth.Seq)
				}
			}
			assert.Empty(t, p.a.rxErrs)
			assert.Zero(t, p.a.s.Status().Counters.AuthFailures)
		})
	}
}

// TestAuthMismatch: a wrong key, key ID or type, or authentication on one
// side only: every packet is discarded and the session never comes Up.
func TestAuthMismatch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		a, b   SessionConfig
		errA   error // what a reports for b's packets
		errB   error
		digest bool
	}{
		{"wrong key", withAuth(cfgA(), AuthMeticulousKeyedSHA1, 1, "key-one"), withAuth(cfgB(), AuthMeticulousKeyedSHA1, 1, "key-two"),
			ErrBadDigest, ErrBadDigest, true},
		{"wrong key id", withAuth(cfgA(), AuthKeyedSHA1, 1, "k"), withAuth(cfgB(), AuthKeyedSHA1, 2, "k"),
			ErrAuthKeyID, ErrAuthKeyID, false},
		{"wrong type", withAuth(cfgA(), AuthKeyedSHA1, 1, "k"), withAuth(cfgB(), AuthMeticulousKeyedSHA1, 1, "k"),
			ErrAuthWrongType, ErrAuthWrongType, false},
		{"one side only", withAuth(cfgA(), AuthKeyedSHA1, 1, "k"), cfgB(),
			ErrAuthMissing, ErrAuthUnwanted, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, tc.a, tc.b)
			p.runFor(10 * time.Second)
			assert.Equal(t, StateDown, p.a.s.State())
			assert.Equal(t, StateDown, p.b.s.State())
			assert.Empty(t, p.a.changes)
			assert.Empty(t, p.b.changes)
			require.NotEmpty(t, p.a.rxErrs)
			require.NotEmpty(t, p.b.rxErrs)
			for _, err := range p.a.rxErrs {
				assert.ErrorIs(t, err, tc.errA)
			}
			for _, err := range p.b.rxErrs {
				assert.ErrorIs(t, err, tc.errB)
			}
			assert.Equal(t, uint64(len(p.a.rxErrs)), p.a.s.Status().Counters.AuthFailures)
			assert.Zero(t, p.a.s.Status().Counters.Received)
			assert.Zero(t, p.a.s.Status().RemoteDiscriminator, "nothing learnt from a rejected packet")
		})
	}
}

// TestAuthReplay (RFC 5880 6.7.4): with Meticulous Keyed SHA1 a replayed
// packet, old or the latest, is rejected; with Keyed SHA1 the latest
// sequence number may repeat but an old one may not.
func TestAuthReplay(t *testing.T) {
	for _, tc := range []struct {
		typ           AuthType
		latestAllowed bool
	}{{AuthMeticulousKeyedSHA1, false}, {AuthKeyedSHA1, true}} {
		t.Run(tc.typ.String(), func(t *testing.T) {
			p := newPair(t, withAuth(cfgA(), tc.typ, 9, "replay"), withAuth(cfgB(), tc.typ, 9, "replay"))
			p.bringUp()
			p.runFor(time.Second)
			old := slices.Clone(p.b.sent[len(p.b.sent)-20].wire)
			p.runFor(time.Second)
			require.True(t, p.bothUp())

			p.deliver(p.a, old)
			require.NotEmpty(t, p.a.rxErrs)
			assert.ErrorIs(t, p.a.rxErrs[len(p.a.rxErrs)-1], ErrAuthSequence, "old packet replayed")

			// The latest packet b sent, delivered once more.
			n := len(p.a.rxErrs)
			p.runUntil(p.now.Add(time.Second), func() bool { return len(p.wire) == 0 })
			latest := slices.Clone(p.b.sent[len(p.b.sent)-1].wire)
			p.deliver(p.a, latest)
			if tc.latestAllowed {
				assert.Len(t, p.a.rxErrs, n)
			} else {
				require.Len(t, p.a.rxErrs, n+1)
				assert.ErrorIs(t, p.a.rxErrs[n], ErrAuthSequence)
			}
			assert.Equal(t, uint64(len(p.a.rxErrs)), p.a.s.Status().Counters.AuthFailures)
			p.runFor(time.Second)
			assert.True(t, p.bothUp(), "replays do not disturb the session")
		})
	}
}

// TestAuthTampered: packets altered in flight fail the digest; the session
// times out (diag 1) as if they were lost.
func TestAuthTampered(t *testing.T) {
	p := newPair(t, withAuth(cfgA(), AuthMeticulousKeyedSHA1, 1, "k"), withAuth(cfgB(), AuthMeticulousKeyedSHA1, 1, "k"))
	p.bringUp()
	p.runFor(time.Second)
	at := p.now
	p.b.tamper = func(w []byte) { w[offDesiredTx+2]++ } // b "asks" for another interval
	p.runFor(time.Second)
	ca := p.a.changesSince(at)
	require.NotEmpty(t, ca)
	assert.Equal(t, DiagControlDetectionExpired, ca[0].Diag)
	for _, err := range p.a.rxErrs {
		assert.ErrorIs(t, err, ErrBadDigest)
	}
	assert.NotEmpty(t, p.a.rxErrs)
}

// TestAuthSequenceLapse: after an outage longer than twice the detection
// time the receiver forgets the sequence number (bfd.AuthSeqKnown), so the
// session comes back although the peer's sequence moved on.
func TestAuthSequenceLapse(t *testing.T) {
	p := newPair(t, withAuth(cfgA(), AuthMeticulousKeyedSHA1, 1, "k"), withAuth(cfgB(), AuthMeticulousKeyedSHA1, 1, "k"))
	p.bringUp()
	p.runFor(time.Second)
	p.b.drop = true
	seq := p.b.sent[len(p.b.sent)-1].pkt.Auth.Seq
	p.runFor(15 * time.Second)
	assert.Greater(t, p.b.sent[len(p.b.sent)-1].pkt.Auth.Seq-seq, uint32(9), "b's sequence moved past the window")
	p.b.drop = false
	p.bringUp()
	assert.Empty(t, p.a.rxErrs)
}
