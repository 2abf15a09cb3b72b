package config

import (
	"os"
	"path/filepath"

	"github.com/bgpgw/bgpgw/pkg/config/yamltree"
)

// Parse and Load read YAML as pkg/configfile does (it imports this package,
// so its tests here cannot import it): the tests below exercise the decoder
// through real YAML.
func Parse(data []byte) (*Config, error) {
	tree, err := yamltree.Parse(data)
	if err != nil {
		return nil, Errors{{Msg: err.Error()}}
	}
	return Decode(tree, "")
}

func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	tree, err := yamltree.Parse(data)
	if err != nil {
		return nil, Errors{{Msg: err.Error()}}
	}
	return Decode(tree, filepath.Dir(path))
}
