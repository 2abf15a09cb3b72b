// Package yamltree reads a bgpgw configuration's YAML into the generic tree
// that config.Decode types and validates, through viper (keys lowercased, as
// viper reads them). It is the only package of bgpgw that imports viper, so
// the configuration types, and the decision core that uses them, do not.
package yamltree

import (
	"bytes"
	"fmt"

	"github.com/spf13/viper"
)

// Parse reads YAML into a tree of maps, lists and scalars.
func Parse(data []byte) (map[string]any, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
		return nil, fmt.Errorf("not valid YAML: %v", err)
	}
	return v.AllSettings(), nil
}
