package bfd

import (
	"bytes"
	"crypto/sha1" //nolint:gosec // RFC 5880 digest
	"encoding/hex"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/fuzz/FuzzDecode seeds")

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	require.NoError(t, err)
	return b
}

// upPacket is an Up packet with Poll, 50 ms timers, as bytes and decoded.
const upPacketHex = "21 e0 03 18 00000011 00000022 0000c350 0000c350 00000000"

var upPacket = Packet{Diag: DiagControlDetectionExpired, State: StateUp, Poll: true, DetectMult: 3,
	MyDiscriminator: 0x11, YourDiscriminator: 0x22, DesiredMinTxInterval: 50000, RequiredMinRxInterval: 50000}

func TestDecode(t *testing.T) {
	p, err := Decode(unhex(t, upPacketHex))
	require.NoError(t, err)
	assert.Equal(t, upPacket, p)
	w, err := p.Marshal()
	require.NoError(t, err)
	assert.Equal(t, unhex(t, upPacketHex), w)

	// Trailing bytes past Length are ignored.
	p, err = Decode(append(unhex(t, upPacketHex), 0xde, 0xad))
	require.NoError(t, err)
	assert.Equal(t, upPacket, p)

	// Flags: every bit but M and A, one at a time.
	for _, tc := range []struct {
		bit byte
		get func(*Packet) bool
	}{
		{flagPoll, func(p *Packet) bool { return p.Poll }},
		{flagFinal, func(p *Packet) bool { return p.Final }},
		{flagCPI, func(p *Packet) bool { return p.ControlPlaneIndependent }},
		{flagDemand, func(p *Packet) bool { return p.Demand }},
	} {
		b := unhex(t, upPacketHex)
		b[1] = byte(StateUp)<<stateShift | tc.bit
		p, err := Decode(b)
		require.NoError(t, err)
		assert.True(t, tc.get(&p), "bit %#x", tc.bit)
	}
}

func TestDecodeSHA1(t *testing.T) {
	key := []byte("bfd-key")
	p := upPacket
	p.Auth = Auth{Type: AuthMeticulousKeyedSHA1, Len: SHA1AuthLen, KeyID: 7, Seq: 0xfffffffe}
	w, err := p.Marshal()
	require.NoError(t, err)
	require.Len(t, w, 52)
	require.NoError(t, SignSHA1(w, key))

	// The digest, computed independently: SHA1 of the packet with the key
	// (zero-padded to 20 bytes) in the hash field.
	in := bytes.Clone(w)
	copy(in[32:], make([]byte, 20))
	copy(in[32:], key)
	want := sha1.Sum(in) //nolint:gosec
	assert.Equal(t, want[:], w[32:])
	assert.Equal(t, byte(0x04), w[1]&flagAuth)
	assert.Equal(t, []byte{5, 28, 7, 0, 0xff, 0xff, 0xff, 0xfe}, w[24:32])

	d, err := Decode(w)
	require.NoError(t, err)
	assert.Equal(t, AuthMeticulousKeyedSHA1, d.Auth.Type)
	assert.Equal(t, uint32(0xfffffffe), d.Auth.Seq)
	assert.Equal(t, want[:], d.Auth.Bytes())
	require.NoError(t, VerifySHA1(w, key))
	w[5] ^= 1
	assert.ErrorIs(t, VerifySHA1(w, key), ErrBadDigest)
	assert.ErrorIs(t, VerifySHA1(unhex(t, upPacketHex), key), ErrNotDigestAuth)
}

func TestDecodeInvalid(t *testing.T) {
	valid := unhex(t, upPacketHex)
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(valid)) }
	withAuth := func(typ, alen byte, total int) []byte {
		b := make([]byte, total)
		copy(b, valid)
		b[1] |= flagAuth
		b[3] = byte(total)
		b[24], b[25] = typ, alen
		return b
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"23 bytes", valid[:23], ErrShort},
		{"version 0", mod(func(b []byte) []byte { b[0] &= 0x1f; return b }), ErrVersion},
		{"version 2", mod(func(b []byte) []byte { b[0] = 2<<5 | b[0]&0x1f; return b }), ErrVersion},
		{"length 23", mod(func(b []byte) []byte { b[3] = 23; return b }), ErrLength},
		{"length past payload", mod(func(b []byte) []byte { b[3] = 25; return b }), ErrLength},
		{"length 25 no auth", mod(func(b []byte) []byte { b[3] = 25; return append(b, 0) }), ErrLength},
		{"A bit with length 24", mod(func(b []byte) []byte { b[1] |= flagAuth; return b }), ErrLength},
		{"detect mult 0", mod(func(b []byte) []byte { b[2] = 0; return b }), ErrDetectMult},
		{"multipoint", mod(func(b []byte) []byte { b[1] |= flagMultipoint; return b }), ErrMultipoint},
		{"my discriminator 0", mod(func(b []byte) []byte { copy(b[4:8], []byte{0, 0, 0, 0}); return b }), ErrMyDiscr},
		{"your discriminator 0 in Up", mod(func(b []byte) []byte { copy(b[8:12], []byte{0, 0, 0, 0}); return b }), ErrYourDiscr},
		{"your discriminator 0 in Init", mod(func(b []byte) []byte {
			copy(b[8:12], []byte{0, 0, 0, 0})
			b[1] = byte(StateInit) << stateShift
			return b
		}), ErrYourDiscr},
		{"auth type 0", withAuth(0, 28, 52), ErrAuthType},
		{"auth type 6", withAuth(6, 28, 52), ErrAuthType},
		{"sha1 auth len 24", withAuth(4, 24, 48), ErrAuthLength},
		{"sha1 auth len vs length", withAuth(4, 28, 50), ErrAuthLength},
		{"md5 auth len 28", withAuth(2, 28, 52), ErrAuthLength},
		{"password auth len 3", withAuth(1, 3, 27), ErrAuthLength},
		{"password auth len 20", withAuth(1, 20, 44), ErrAuthLength},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.b)
			assert.ErrorIs(t, err, tc.want)
		})
	}
	// Your Discriminator zero is fine in Down and AdminDown.
	for _, st := range []State{StateDown, StateAdminDown} {
		b := bytes.Clone(valid)
		copy(b[8:12], []byte{0, 0, 0, 0})
		b[1] = byte(st) << stateShift
		_, err := Decode(b)
		assert.NoError(t, err, "state %v", st)
	}
}

func TestAppendInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(p *Packet)
		want error
	}{
		{"diag", func(p *Packet) { p.Diag = 32 }, ErrDiag},
		{"state", func(p *Packet) { p.State = 4 }, ErrState},
		{"mult", func(p *Packet) { p.DetectMult = 0 }, ErrDetectMult},
		{"my", func(p *Packet) { p.MyDiscriminator = 0 }, ErrMyDiscr},
		{"your", func(p *Packet) { p.YourDiscriminator = 0 }, ErrYourDiscr},
		{"auth len", func(p *Packet) { p.Auth = Auth{Type: AuthKeyedSHA1, Len: 24} }, ErrAuthLength},
		{"auth type", func(p *Packet) { p.Auth = Auth{Type: 9, Len: 24} }, ErrAuthType},
	} {
		p := upPacket
		tc.mod(&p)
		b, err := p.Append([]byte{1, 2})
		assert.ErrorIs(t, err, tc.want, tc.name)
		assert.Equal(t, []byte{1, 2}, b, "nothing appended on error")
	}
}

// randomPacket returns a valid packet with random fields.
func randomPacket(r *rand.Rand) Packet {
	p := Packet{
		Diag:                      Diag(r.IntN(32)),
		State:                     State(r.IntN(4)),
		Poll:                      r.IntN(2) == 0,
		Final:                     r.IntN(2) == 0,
		ControlPlaneIndependent:   r.IntN(2) == 0,
		Demand:                    r.IntN(2) == 0,
		DetectMult:                uint8(1 + r.IntN(255)),
		MyDiscriminator:           1 + r.Uint32N(1<<32-1),
		YourDiscriminator:         r.Uint32(),
		DesiredMinTxInterval:      r.Uint32(),
		RequiredMinRxInterval:     r.Uint32(),
		RequiredMinEchoRxInterval: r.Uint32(),
	}
	if p.YourDiscriminator == 0 && p.State > StateDown {
		p.YourDiscriminator = 1
	}
	switch typ := AuthType(r.IntN(6)); typ {
	case AuthNone:
	case AuthSimplePassword:
		n := 1 + r.IntN(16)
		p.Auth = Auth{Type: typ, Len: uint8(3 + n), KeyID: uint8(r.IntN(256))}
		for i := range n {
			p.Auth.Data[i] = byte(r.IntN(256))
		}
	default:
		n, l := md5DigestLen, MD5AuthLen
		if typ == AuthKeyedSHA1 || typ == AuthMeticulousKeyedSHA1 {
			n, l = sha1DigestLen, SHA1AuthLen
		}
		p.Auth = Auth{Type: typ, Len: uint8(l), KeyID: uint8(r.IntN(256)), Reserved: uint8(r.IntN(2)), Seq: r.Uint32()}
		for i := range n {
			p.Auth.Data[i] = byte(r.IntN(256))
		}
	}
	return p
}

// TestRoundTrip is the property decode(encode(p)) == p over random valid
// packets, and encode(decode(b)) == b.
func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 42))
	for i := range 20000 {
		p := randomPacket(r)
		b, err := p.Marshal()
		require.NoError(t, err, "%+v", p)
		require.Equal(t, p.Len(), len(b))
		q, err := Decode(b)
		require.NoError(t, err, "packet %d %+v", i, p)
		require.Equal(t, p, q)
		b2, err := q.Marshal()
		require.NoError(t, err)
		require.Equal(t, b, b2)
	}
}

// FuzzDecode: Decode never panics; whatever it accepts encodes back to the
// same bytes (up to Length) and decodes to the same packet.
func FuzzDecode(f *testing.F) {
	for _, s := range seedPackets(f) {
		f.Add(s.b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Decode(b)
		if err != nil {
			return
		}
		if p.DetectMult == 0 || p.MyDiscriminator == 0 || p.Len() > len(b) {
			t.Fatalf("accepted invalid packet %+v from %x", p, b)
		}
		w, err := p.Marshal()
		if err != nil {
			t.Fatalf("decoded packet does not encode: %v: %+v", err, p)
		}
		if !bytes.Equal(w, b[:p.Len()]) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b[:p.Len()], w)
		}
		q, err := Decode(w)
		if err != nil || q != p {
			t.Fatalf("second decode: %v, %+v != %+v", err, q, p)
		}
		// Digest checks never panic either.
		_ = VerifySHA1(b, []byte("k"))
	})
}

type seed struct {
	name string
	b    []byte
}

// seedPackets are valid packets of each kind and a few broken ones; they
// are also written to testdata/fuzz/FuzzDecode with -update-corpus.
func seedPackets(t testing.TB) []seed {
	mk := func(p Packet, key string) []byte {
		b, err := p.Marshal()
		require.NoError(t, err)
		if key != "" {
			require.NoError(t, SignSHA1(b, []byte(key)))
		}
		return b
	}
	down := Packet{State: StateDown, DetectMult: 3, MyDiscriminator: 0x1234, DesiredMinTxInterval: 1e6, RequiredMinRxInterval: 50000}
	init := down
	init.State, init.YourDiscriminator = StateInit, 0x5678
	final := upPacket
	final.Poll, final.Final, final.Diag = false, true, DiagNone
	admin := down
	admin.State, admin.Diag = StateAdminDown, DiagAdministrativelyDown
	sha := upPacket
	sha.Auth = Auth{Type: AuthKeyedSHA1, Len: SHA1AuthLen, KeyID: 1, Seq: 100}
	msha := init
	msha.Auth = Auth{Type: AuthMeticulousKeyedSHA1, Len: SHA1AuthLen, KeyID: 2, Seq: 0xffffffff}
	md5 := upPacket
	md5.Auth = Auth{Type: AuthMeticulousKeyedMD5, Len: MD5AuthLen, KeyID: 3, Seq: 7}
	pw := down
	pw.Auth = Auth{Type: AuthSimplePassword, Len: 3 + 6, KeyID: 4}
	copy(pw.Auth.Data[:], "secret")
	up := unhex(t, upPacketHex)
	return []seed{
		{"down", mk(down, "")},
		{"init", mk(init, "")},
		{"up-poll", up},
		{"up-final", mk(final, "")},
		{"admin-down", mk(admin, "")},
		{"keyed-sha1", mk(sha, "key")},
		{"meticulous-keyed-sha1", mk(msha, "another key")},
		{"meticulous-keyed-md5", mk(md5, "")},
		{"simple-password", mk(pw, "")},
		{"short", up[:20]},
		{"bad-length", append(bytes.Clone(up[:3]), append([]byte{60}, up[4:]...)...)},
		{"trailing", append(bytes.Clone(up), 1, 2, 3)},
	}
}

func TestSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	seeds := seedPackets(t)
	if *updateCorpus {
		require.NoError(t, os.MkdirAll(dir, 0o755))
		for _, s := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s.b)
			require.NoError(t, os.WriteFile(filepath.Join(dir, s.name), []byte(body), 0o644))
		}
	}
	ents, err := os.ReadDir(dir)
	require.NoError(t, err, "seed corpus missing: go test ./pkg/bfd -run TestSeedCorpus -update-corpus")
	assert.GreaterOrEqual(t, len(ents), len(seeds))
	for _, s := range seeds {
		got, err := os.ReadFile(filepath.Join(dir, s.name))
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s.b), string(got), "seed %s is stale; rerun with -update-corpus", s.name)
	}
}
