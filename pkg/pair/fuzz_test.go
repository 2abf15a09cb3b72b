package pair

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seeds in testdata/fuzz/FuzzDecode")

type seed struct {
	name string
	b    []byte
}

// seeds are the committed seed corpus of FuzzDecode. TestSeedCorpus keeps
// the files in step with this list; extra files (found by fuzzing) stay.
func seeds(t testing.TB) []seed {
	valid := mustEncode(t, sampleMessages[2])
	return []seed{
		{"valid-minimal", mustEncode(t, sampleMessages[0])},
		{"valid-one-device", mustEncode(t, sampleMessages[1])},
		{"valid-carrying", valid},
		{"valid-draining-max-seq", mustEncode(t, sampleMessages[3])},
		{"truncated", valid[:len(valid)-1]},
		{"header-only", valid[:headerLen]},
		{"bad-mac", append(append([]byte(nil), valid[:len(valid)-1]...), valid[len(valid)-1]^0xff)},
		{"wrong-version", append(append([]byte("BGWP"), 2), valid[5:]...)},
		{"garbage", []byte("\x00\x01garbage that is long enough to pass the length checks........")},
		{"trailing-byte-signed", sign(append(valid[:len(valid)-macLen:len(valid)-macLen], 0))},
		{"unsorted-signed", sign(rawBody(0, 1, 1, "a", []string{"b", "a"}, nil))},
		{"carrying-not-device-signed", sign(rawBody(3, 1, 1, "gw", []string{"a"}, []string{"b"}))},
	}
}

func corpusFile(b []byte) string {
	return fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
}

// TestSeedCorpus checks the committed seed files; -update-corpus rewrites
// them (go test ./pkg/pair -run TestSeedCorpus -update-corpus).
func TestSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	ss := seeds(t)
	if *updateCorpus {
		require.NoError(t, os.MkdirAll(dir, 0o755))
		for _, s := range ss {
			require.NoError(t, os.WriteFile(filepath.Join(dir, s.name), []byte(corpusFile(s.b)), 0o644))
		}
	}
	for _, s := range ss {
		got, err := os.ReadFile(filepath.Join(dir, s.name))
		require.NoError(t, err, "seed missing: go test ./pkg/pair -run TestSeedCorpus -update-corpus")
		assert.Equal(t, corpusFile(s.b), string(got), "seed %s is stale; rerun with -update-corpus", s.name)
	}
}

// FuzzDecode: Decode never panics, and whatever it accepts is canonical:
// it re-encodes to the same bytes. Random bytes almost never carry a valid
// MAC, so each input is also tried re-signed (its last 32 bytes replaced by
// the right MAC), which lets the fuzzer reach the body parser.
func FuzzDecode(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s.b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		check(t, b)
		if len(b) >= macLen {
			check(t, sign(b[:len(b)-macLen]))
		}
	})
}

func check(t *testing.T, b []byte) {
	m, err := Decode(b, testKey)
	if err != nil {
		for _, e := range []error{ErrShort, ErrVersion, ErrAuth, ErrMalformed} {
			if errors.Is(err, e) {
				return
			}
		}
		t.Fatalf("Decode error %v wraps no sentinel", err)
	}
	if err := validate(m.State); err != nil {
		t.Fatalf("Decode accepted an invalid state: %v", err)
	}
	w, err := Encode(nil, m, testKey)
	if err != nil {
		t.Fatalf("decoded message does not encode: %v", err)
	}
	if !bytes.Equal(w, b) {
		t.Fatalf("re-encoding differs:\n in %x\nout %x", b, w)
	}
}
