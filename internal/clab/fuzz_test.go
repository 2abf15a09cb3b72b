package clab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary files to Load: it must never panic, and what
// it accepts must be a topology the runner can build (valid node and
// interface names, links between defined nodes, each interface used once,
// absolute bind paths, non-empty exec commands, linux nodes only).
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(topoDir, "*.clab.yml"))
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(sample))
	f.Add([]byte("name: x\ntopology:\n  nodes:\n    a: {kind: linux, exec: ['sh -c \"echo ${X:-y}\"']}\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "fuzz.clab.yml")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		topo, err := Load(path)
		if err != nil {
			if topo != nil {
				t.Fatal("a topology with an error")
			}
			return
		}
		if topo.Name == "" || len(topo.Nodes) == 0 {
			t.Fatalf("accepted without name or nodes: %+v", topo)
		}
		names := map[string]bool{}
		for _, n := range topo.Nodes {
			if !nodeNameRE.MatchString(n.Name) || names[n.Name] {
				t.Fatalf("bad or duplicate node name %q", n.Name)
			}
			names[n.Name] = true
			if n.Kind != "linux" {
				t.Fatalf("node %s of kind %q", n.Name, n.Kind)
			}
			for _, b := range n.Binds {
				if !filepath.IsAbs(b.Source) || !filepath.IsAbs(b.Target) || b.Target == "/" {
					t.Fatalf("node %s: bind %+v", n.Name, b)
				}
			}
			for _, c := range n.Exec {
				if len(c.Args) == 0 {
					t.Fatalf("node %s: empty exec %q", n.Name, c.Line)
				}
			}
			for k := range n.Env {
				if !envNameRE.MatchString(k) {
					t.Fatalf("node %s: env name %q", n.Name, k)
				}
			}
		}
		used := map[Endpoint]bool{}
		for _, l := range topo.Links {
			for _, e := range []Endpoint{l.A, l.B} {
				if !names[e.Node] || checkIfName(e.Interface) != nil || used[e] || strings.Contains(e.Interface, ":") {
					t.Fatalf("bad link end %+v", e)
				}
				used[e] = true
			}
		}
	})
}
