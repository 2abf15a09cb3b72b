// Package configfile reads a bgpgw configuration file: its YAML into a
// generic tree (pkg/config/yamltree), then config.Decode into a validated
// config.Config.
package configfile

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/config/yamltree"
)

// Load reads and validates the configuration file at path; relative secret
// file paths are taken from its directory.
func Load(path string) (*config.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return parse(data, filepath.Dir(path))
}

// Parse validates a configuration given as YAML; relative secret file
// paths are taken from the current directory. The error, when not nil, is
// a config.Errors listing every problem.
func Parse(data []byte) (*config.Config, error) { return parse(data, "") }

func parse(data []byte, baseDir string) (*config.Config, error) {
	tree, err := yamltree.Parse(data)
	if err != nil {
		return nil, config.Errors{{Msg: err.Error()}}
	}
	return config.Decode(tree, baseDir)
}

// SocketFromFile reads only api.socket from a configuration file, for the
// CLI commands that talk to a running daemon: they need no secrets and do
// not validate the rest.
func SocketFromFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read config: %w", err)
	}
	tree, err := yamltree.Parse(data)
	if err != nil {
		return "", config.Errors{{Msg: err.Error()}}
	}
	return config.Socket(tree)
}
