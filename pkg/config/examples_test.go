package config

import (
	"io/fs"
	"path/filepath"
	"slices"
	"testing"
)

// examplesDir holds the example configurations: one directory per pair of
// instances, one YAML file per instance.
const examplesDir = "../../configs"

// TestExampleConfigs loads every example and checks that the two files of
// each pair describe one consistent pair. Warnings are allowed: the
// placeholder secrets are checked out with mode 0644.
func TestExampleConfigs(t *testing.T) {
	pairs := map[string][]string{} // directory -> its YAML files
	err := filepath.WalkDir(examplesDir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() && (filepath.Ext(path) == ".yaml" || filepath.Ext(path) == ".yml") {
			pairs[filepath.Dir(path)] = append(pairs[filepath.Dir(path)], path)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("list %s: %v", examplesDir, err)
	}
	if len(pairs) == 0 {
		t.Fatalf("no example configurations under %s", examplesDir)
	}
	for dir, files := range pairs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			slices.Sort(files)
			var cfgs []*Config
			for _, f := range files {
				c, err := Load(f)
				if err != nil {
					t.Errorf("%s:\n%v", f, err)
					continue
				}
				for _, w := range c.Warnings {
					t.Logf("%s: warning: %s", f, w)
				}
				cfgs = append(cfgs, c)
			}
			if len(files) != 2 {
				t.Fatalf("%s: want the 2 files of one pair, got %d: %v", dir, len(files), files)
			}
			if t.Failed() {
				return
			}
			checkPair(t, files, cfgs[0], cfgs[1])
		})
	}
}

func checkPair(t *testing.T, files []string, a, b *Config) {
	t.Helper()
	if a.Instance.Name == b.Instance.Name {
		t.Errorf("%s and %s: both name the instance %q", files[0], files[1], a.Instance.Name)
	}
	if a.Instance.Mode != b.Instance.Mode {
		t.Errorf("%s and %s: instance.mode %s and %s: a pair runs one mode", files[0], files[1], a.Instance.Mode, b.Instance.Mode)
	}
	if a.BGP.ASN != b.BGP.ASN {
		t.Errorf("%s and %s: bgp.asn %d and %d: a pair shares one AS", files[0], files[1], a.BGP.ASN, b.BGP.ASN)
	}
	if a.BGP.RouterID == b.BGP.RouterID {
		t.Errorf("%s and %s: both use bgp.router_id %s", files[0], files[1], a.BGP.RouterID)
	}
	if !slices.Equal(a.Announce, b.Announce) {
		t.Errorf("%s and %s: announce %v and %v: a pair announces the same prefixes", files[0], files[1], a.Announce, b.Announce)
	}
	if a.Standby != b.Standby {
		t.Errorf("%s and %s: standby %+v and %+v: a pair uses the same settings", files[0], files[1], a.Standby, b.Standby)
	}
	switch a.Instance.Mode {
	case ActiveStandby:
		roles := []Role{a.Instance.Role, b.Instance.Role}
		slices.Sort(roles)
		if !slices.Equal(roles, []Role{RolePrimary, RoleStandby}) {
			t.Errorf("%s and %s: roles %v: want one primary and one standby", files[0], files[1], roles)
		}
	case ActiveActive:
		if a.Instance.Role != RoleNone || b.Instance.Role != RoleNone {
			t.Errorf("%s and %s: roles set in active-active", files[0], files[1])
		}
	}
	// Each instance holds its own tunnels to the same on-prem devices: no
	// secret or inside subnet may be shared between the two.
	for _, ta := range a.Tunnels {
		for _, tb := range b.Tunnels {
			if ta.InsideLocal.Masked().Overlaps(tb.InsideLocal.Masked()) {
				t.Errorf("%s and %s: tunnels %s and %s share inside subnet %s", files[0], files[1], ta.Name, tb.Name, ta.InsideLocal.Masked())
			}
			if ta.PSK.IsSet() && ta.PSK.Source() == tb.PSK.Source() {
				t.Errorf("%s and %s: tunnels %s and %s read the same PSK (%s)", files[0], files[1], ta.Name, tb.Name, ta.PSK.Source())
			}
		}
	}
}
