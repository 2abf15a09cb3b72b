package configfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/pkg/config"
)

func write(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bgpgw.yaml")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
	return path
}

// TestLoadExamples: every example configuration loads through the file
// reader (pkg/config's tests cover the decoder key by key).
func TestLoadExamples(t *testing.T) {
	files, err := filepath.Glob("../../configs/*/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		c, err := Load(f)
		if assert.NoError(t, err, f) {
			assert.NotEmpty(t, c.Tunnels, f)
		}
	}
}

func TestBadInput(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"))
	assert.ErrorContains(t, err, "read config")

	_, err = Parse([]byte("tunnels: [\n"))
	var es config.Errors
	require.True(t, errors.As(err, &es), "%v", err)
	assert.Contains(t, es.Error(), "not valid YAML")

	_, err = Load(write(t, "bogus_key: 1\n"))
	assert.ErrorContains(t, err, "bogus_key")
}

func TestSocketFromFile(t *testing.T) {
	s, err := SocketFromFile(write(t, "instance: {name: gw1}\n"))
	require.NoError(t, err)
	assert.Equal(t, config.DefaultSocket, s)

	s, err = SocketFromFile(write(t, "api: {socket: /run/x/bgpgw.sock}\ntunnels: [broken\n"))
	assert.Error(t, err, "not YAML: %q", s)

	s, err = SocketFromFile(write(t, "api: {socket: /run/x/bgpgw.sock}\n"))
	require.NoError(t, err)
	assert.Equal(t, "/run/x/bgpgw.sock", s)

	_, err = SocketFromFile(write(t, "api: {socket: relative.sock}\n"))
	assert.ErrorContains(t, err, "api.socket: must be an absolute path")
}
