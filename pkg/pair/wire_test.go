package pair

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var testKey = []byte("pair-test-key-0123456789")

// sign appends the HMAC of body with testKey: it builds datagrams Encode
// refuses to produce.
func sign(body []byte) []byte {
	mac := hmac.New(sha256.New, testKey)
	mac.Write(body)
	return mac.Sum(append([]byte(nil), body...))
}

// rawBody lays out a body by the format comment, independently of Encode
// and with no checks.
func rawBody(flags byte, epoch, seq uint64, inst string, devices, carrying []string) []byte {
	return rawBodyDrops(flags, epoch, seq, 0, inst, devices, carrying)
}

func rawBodyDrops(flags byte, epoch, seq uint64, drops uint32, inst string, devices, carrying []string) []byte {
	b := append([]byte("BGWP"), 1, flags)
	b = binary.BigEndian.AppendUint64(b, epoch)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = binary.BigEndian.AppendUint32(b, drops)
	b = append(b, byte(len(inst)))
	b = append(b, inst...)
	for _, l := range [][]string{devices, carrying} {
		b = binary.BigEndian.AppendUint16(b, uint16(len(l)))
		for _, n := range l {
			b = append(b, byte(len(n)))
			b = append(b, n...)
		}
	}
	return b
}

func mustEncode(t testing.TB, m Message) []byte {
	t.Helper()
	b, err := Encode(nil, m, testKey)
	require.NoError(t, err)
	return b
}

// names returns n distinct sorted names of the given length.
func names(n, length int) []string {
	out := make([]string, n)
	for i := range out {
		s := fmt.Sprintf("dev-%04d", i)
		out[i] = s + strings.Repeat("x", length-len(s))
	}
	return out
}

var sampleMessages = []Message{
	{State: State{Instance: "a"}},
	{State: State{Instance: "gw-a", Devices: []string{"onprem-1"}, ChecksOK: true}, Epoch: 1, Seq: 1},
	{State: State{Instance: "gw-b", Devices: []string{"dc1-fw", "dc2-fw", "edge"}, Carrying: []string{"dc1-fw", "edge"}, ChecksOK: true, Drops: 3},
		Epoch: 1_760_000_000_123_456_789, Seq: 42},
	{State: State{Instance: "gw-a", Devices: []string{"dc1-fw"}, Draining: true, Drops: ^uint32(0)}, Epoch: ^uint64(0), Seq: ^uint64(0)},
	{State: State{Instance: strings.Repeat("i", maxInstance), Devices: names(maxDevices, 55), Carrying: names(maxDevices, 55)[:10],
		Draining: true, ChecksOK: true}, Epoch: 7, Seq: 8},
}

func TestRoundTrip(t *testing.T) {
	for i, m := range sampleMessages {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			prefix := []byte("keep")
			b, err := Encode(prefix, m, testKey)
			require.NoError(t, err)
			assert.Equal(t, "keep", string(b[:4]), "Encode appends")
			assert.LessOrEqual(t, len(b)-4, maxDatagram)
			got, err := Decode(b[4:], testKey)
			require.NoError(t, err)
			assert.Equal(t, m, got)
		})
	}
}

// TestLayout pins the wire format: Encode produces exactly the documented
// layout followed by HMAC-SHA256 over it.
func TestLayout(t *testing.T) {
	m := sampleMessages[2]
	body := rawBodyDrops(flagChecksOK, m.Epoch, m.Seq, m.Drops, m.Instance, m.Devices, m.Carrying)
	assert.Equal(t, sign(body), mustEncode(t, m))
	b := mustEncode(t, Message{State: State{Instance: "x", Draining: true, ChecksOK: true, Drops: 0x0a0b0c0d}, Epoch: 0x0102030405060708, Seq: 9})
	assert.Equal(t, "42475750"+"01"+"03"+"0102030405060708"+"0000000000000009"+"0a0b0c0d"+"01"+"78"+"0000"+"0000",
		fmt.Sprintf("%x", b[:len(b)-macLen]))
	assert.Len(t, b, minDatagram)
}

func TestDecodeErrors(t *testing.T) {
	valid := mustEncode(t, sampleMessages[2])
	flip := func(b []byte, i int) []byte {
		b = append([]byte(nil), b...)
		b[i] ^= 0x01
		return b
	}
	otherKey := []byte("another-key-of-enough-length")
	badKeyDatagram, err := Encode(nil, sampleMessages[2], otherKey)
	require.NoError(t, err)
	oversize := sign(rawBody(0, 1, 1, "a", names(maxDevices, 64), names(maxDevices, 64)))
	for _, tc := range []struct {
		name string
		b    []byte
		key  []byte
		want error
	}{
		{"empty", nil, testKey, ErrShort},
		{"magic only", []byte("BGWP"), testKey, ErrShort},
		{"header only", valid[:headerLen], testKey, ErrShort},
		{"one byte under the minimum", valid[:minDatagram-1], testKey, ErrShort},
		{"bad magic", append([]byte("BGWQ"), valid[4:]...), testKey, ErrVersion},
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\nsome more bytes to pass the length check"), testKey, ErrVersion},
		{"version 0", func() []byte { b := append([]byte(nil), valid...); b[4] = 0; return b }(), testKey, ErrVersion},
		{"version 2", func() []byte { b := append([]byte(nil), valid...); b[4] = 2; return b }(), testKey, ErrVersion},
		{"truncated by one byte", valid[:len(valid)-1], testKey, ErrAuth},
		{"wrong key", valid, otherKey, ErrAuth},
		{"signed with another key", badKeyDatagram, testKey, ErrAuth},
		{"flipped flag bit", flip(valid, 5), testKey, ErrAuth},
		{"flipped body byte", flip(valid, 30), testKey, ErrAuth},
		{"flipped MAC byte", flip(valid, len(valid)-1), testKey, ErrAuth},
		{"key too short to verify", valid, testKey[:15], ErrAuth},
		{"over 16 KiB", oversize, testKey, ErrMalformed},
		{"trailing byte", sign(append(valid[:len(valid)-macLen:len(valid)-macLen], 0)), testKey, ErrMalformed},
		{"unknown flag", sign(rawBody(0x04, 1, 1, "a", nil, nil)), testKey, ErrMalformed},
		{"empty instance", sign(rawBody(0, 1, 1, "", []string{"d"}, nil)), testKey, ErrMalformed},
		{"instance too long", sign(rawBody(0, 1, 1, strings.Repeat("i", 33), nil, nil)), testKey, ErrMalformed},
		{"unsorted devices", sign(rawBody(0, 1, 1, "a", []string{"b", "a"}, nil)), testKey, ErrMalformed},
		{"duplicate devices", sign(rawBody(0, 1, 1, "a", []string{"a", "a"}, nil)), testKey, ErrMalformed},
		{"empty device name", sign(rawBody(0, 1, 1, "a", []string{""}, nil)), testKey, ErrMalformed},
		{"device name too long", sign(rawBody(0, 1, 1, "a", []string{strings.Repeat("d", 65)}, nil)), testKey, ErrMalformed},
		{"too many devices", sign(rawBody(0, 1, 1, "a", names(maxDevices+1, 8), nil)), testKey, ErrMalformed},
		{"carrying not in devices", sign(rawBody(0, 1, 1, "a", []string{"a", "c"}, []string{"b"})), testKey, ErrMalformed},
		{"carrying without devices", sign(rawBody(0, 1, 1, "a", nil, []string{"a"})), testKey, ErrMalformed},
		{"unsorted carrying", sign(rawBody(0, 1, 1, "a", []string{"a", "b"}, []string{"b", "a"})), testKey, ErrMalformed},
		{"count past the end", sign(append(rawBody(0, 1, 1, "a", nil, nil)[:headerLen+2], 0, 3, 1, 'x')), testKey, ErrMalformed},
		{"name past the end", sign(append(rawBody(0, 1, 1, "a", nil, nil)[:headerLen+2], 0, 1, 9, 'x', 0, 0)), testKey, ErrMalformed},
		{"no carrying count", sign(rawBody(0, 1, 1, "abcd", nil, nil)[:headerLen+7]), testKey, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.b, tc.key)
			require.ErrorIs(t, err, tc.want)
			for _, other := range []error{ErrShort, ErrVersion, ErrAuth, ErrMalformed} {
				if other != tc.want {
					assert.NotErrorIs(t, err, other)
				}
			}
			assert.NotContains(t, err.Error(), string(testKey))
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	st := func(inst string, devices, carrying []string) Message {
		return Message{State: State{Instance: inst, Devices: devices, Carrying: carrying}}
	}
	for _, tc := range []struct {
		name string
		m    Message
	}{
		{"empty instance", st("", nil, nil)},
		{"instance of 33 bytes", st(strings.Repeat("i", 33), nil, nil)},
		{"device of 65 bytes", st("a", []string{strings.Repeat("d", 65)}, nil)},
		{"empty device name", st("a", []string{""}, nil)},
		{"257 devices", st("a", names(257, 8), nil)},
		{"unsorted devices", st("a", []string{"b", "a"}, nil)},
		{"duplicate devices", st("a", []string{"a", "a"}, nil)},
		{"carrying not a device", st("a", []string{"a"}, []string{"b"})},
		{"unsorted carrying", st("a", []string{"a", "b"}, []string{"b", "a"})},
		{"carrying of 65 bytes", st("a", nil, []string{strings.Repeat("d", 65)})},
		{"over 16 KiB", st("a", names(maxDevices, 64), names(maxDevices, 64))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Encode([]byte("pre"), tc.m, testKey)
			require.ErrorIs(t, err, ErrMalformed)
			assert.Equal(t, "pre", string(b), "b is returned unchanged")
		})
	}
	_, err := Encode(nil, sampleMessages[1], testKey[:15])
	require.Error(t, err)
	assert.NotContains(t, err.Error(), string(testKey[:15]))
}

// TestLimits: the largest fields are accepted both ways.
func TestLimits(t *testing.T) {
	m := Message{State: State{Instance: strings.Repeat("i", maxInstance), Devices: names(maxDevices, 60)}}
	b := mustEncode(t, m)
	got, err := Decode(b, testKey)
	require.NoError(t, err)
	assert.Equal(t, m, got)
	m.Devices = []string{strings.Repeat("d", maxDeviceName)}
	m.Carrying = m.Devices
	got, err = Decode(mustEncode(t, m), testKey)
	require.NoError(t, err)
	assert.Equal(t, m, got)
}
