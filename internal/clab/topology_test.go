package clab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const sample = `# a comment
name: demo
topology:
  defaults:
    kind: linux
    image: base:1
    binds:
      - shared:/run/lab/shared:ro
      - /etc/hosts:/run/lab/hosts
    env: {A: defaults, B: defaults, N: 7}
    exec: [echo defaults]
  kinds:
    linux:
      image: kind:1
      binds: [kind:/run/lab/shared]
      env: {B: kind, C: kind}
      exec: ["echo 'kind one'"]
  nodes:
    r1:
      exec: [sh /run/lab/nodes/router.sh "a b" c\ d]
      env: {C: node}
      labels: {graph-level: 1}
    h1:
      image: own:2
      binds: [h1:/run/lab/node]
  links:
    - endpoints: ["r1:eth1", "h1:eth1"]
    - endpoints: [r1:to-h1-b, "h1:eth2"]
      labels: {x: y}
`

func parseSample(t *testing.T, text string) *Topology {
	t.Helper()
	topo, err := Parse([]byte(text), "/labs/demo.clab.yml", nil)
	require.NoError(t, err)
	return topo
}

func TestParseInheritance(t *testing.T) {
	topo := parseSample(t, sample)
	assert.Equal(t, "demo", topo.Name)
	assert.Equal(t, "/labs", topo.Dir)
	require.Len(t, topo.Nodes, 2)

	r1, h1 := topo.Nodes[0], topo.Nodes[1]
	assert.Equal(t, "r1", r1.Name, "nodes keep the order of the file")
	assert.Equal(t, "linux", r1.Kind)
	assert.Equal(t, "kind:1", r1.Image, "the kind's image over the defaults'")
	assert.Equal(t, "own:2", h1.Image, "the node's image over the kind's")
	assert.Equal(t, []Bind{
		{Source: "/etc/hosts", Target: "/run/lab/hosts"},
		{Source: "/labs/kind", Target: "/run/lab/shared"},
	}, r1.Binds, "a later bind to the same target replaces the earlier; relative sources from the file's directory")
	assert.Equal(t, []Bind{
		{Source: "/etc/hosts", Target: "/run/lab/hosts"},
		{Source: "/labs/kind", Target: "/run/lab/shared"},
		{Source: "/labs/h1", Target: "/run/lab/node"},
	}, h1.Binds)
	assert.Equal(t, map[string]string{"A": "defaults", "B": "kind", "C": "node", "N": "7"}, r1.Env)
	assert.Equal(t, map[string]string{"A": "defaults", "B": "kind", "C": "kind", "N": "7"}, h1.Env)
	require.Len(t, r1.Exec, 3, "exec: defaults, then kind, then node")
	assert.Equal(t, []string{"echo", "defaults"}, r1.Exec[0].Args)
	assert.Equal(t, []string{"echo", "kind one"}, r1.Exec[1].Args)
	assert.Equal(t, []string{"sh", "/run/lab/nodes/router.sh", "a b", "c d"}, r1.Exec[2].Args)
	assert.Equal(t, `sh /run/lab/nodes/router.sh "a b" c\ d`, r1.Exec[2].Line)
	assert.Len(t, h1.Exec, 2)

	assert.Equal(t, []Link{
		{A: Endpoint{"r1", "eth1"}, B: Endpoint{"h1", "eth1"}},
		{A: Endpoint{"r1", "to-h1-b"}, B: Endpoint{"h1", "eth2"}},
	}, topo.Links)
	assert.Equal(t, []string{"eth1", "to-h1-b"}, topo.Interfaces("r1"))
	n, ok := topo.Node("h1")
	assert.True(t, ok)
	assert.Equal(t, "h1", n.Name)
	_, ok = topo.Node("nope")
	assert.False(t, ok)
	assert.Equal(t, "/labs/kind:/run/lab/shared", r1.Binds[1].String())
	assert.Equal(t, "/a:/b:ro", Bind{Source: "/a", Target: "/b", ReadOnly: true}.String())
}

func TestParseEnvExpansion(t *testing.T) {
	env := map[string]string{"GATEWAY": "handbuilt", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	text := `name: x
topology:
  nodes:
    n1:
      kind: linux
      env:
        G: ${GATEWAY:=bgpgw}
        D: ${UNSET:-dflt}
        E: ${EMPTY:-fallback}
        U: "${UNSET}"
        S: $HOME and $${NOT}
      exec: ["echo ${GATEWAY}"]
`
	topo, err := Parse([]byte(text), "/x.clab.yml", lookup)
	require.NoError(t, err)
	n := topo.Nodes[0]
	assert.Equal(t, "handbuilt", n.Env["G"])
	assert.Equal(t, "dflt", n.Env["D"])
	assert.Equal(t, "fallback", n.Env["E"], "set but empty takes the default, as in a shell")
	assert.Equal(t, "", n.Env["U"])
	assert.Equal(t, "$HOME and $", n.Env["S"], "a $ not followed by { is kept")
	assert.Equal(t, []string{"echo", "handbuilt"}, n.Exec[0].Args)
}

func TestParseErrors(t *testing.T) {
	node := "name: x\ntopology:\n  nodes:\n    n1:\n      kind: linux\n"
	two := node + "    n2:\n      kind: linux\n"
	for _, c := range []struct {
		name, text, want string
	}{
		{"empty", "", "empty file"},
		{"comment only", "# nothing\n", "empty file"},
		{"not yaml", "name: [x\n", "not valid YAML"},
		{"two documents", node + "---\nname: y\n", "more than one YAML document"},
		{"not a mapping", "- a\n", "must be a mapping"},
		{"no name", "topology:\n  nodes:\n    n1: {kind: linux}\n", "name: required"},
		{"name with space", "name: a b\ntopology:\n  nodes:\n    n1: {kind: linux}\n", "no slashes or white space"},
		{"no topology", "name: x\n", "topology: required"},
		{"no nodes", "name: x\ntopology:\n  links: []\n", "at least one node"},
		{"unknown top key", node + "mgmt: {network: x}\n", "x.clab.yml:6: mgmt: unsupported key"},
		{"unknown topology key", "name: x\ntopology:\n  groups: {}\n  nodes:\n    n1: {kind: linux}\n", "topology.groups: unsupported key"},
		{"unknown node key", node + "      ports: [80:80]\n", "topology.nodes.n1.ports: unsupported key"},
		{"other kind", "name: x\ntopology:\n  nodes:\n    n1: {kind: nokia_srlinux}\n", `kind "nokia_srlinux" is not supported`},
		{"other kind in kinds", "name: x\ntopology:\n  kinds:\n    ceos: {image: x}\n  nodes:\n    n1: {kind: linux}\n", `topology.kinds.ceos: kind "ceos" is not supported`},
		{"kind in kinds", "name: x\ntopology:\n  kinds:\n    linux: {kind: linux}\n  nodes:\n    n1: {kind: linux}\n", "not allowed in topology.kinds"},
		{"no kind", "name: x\ntopology:\n  nodes:\n    n1: {image: x}\n", "topology.nodes.n1.kind: required"},
		{"bad node name", "name: x\ntopology:\n  nodes:\n    R1: {kind: linux}\n", "invalid node name"},
		{"long node name", "name: x\ntopology:\n  nodes:\n    abcdefghijklmnopqrstu: {kind: linux}\n", "invalid node name"},
		{"duplicate key", node + "      kind: linux\n", "topology.nodes.n1.kind: given twice"},
		{"duplicate node", two + "    n1:\n      kind: linux\n", "topology.nodes.n1: given twice"},
		{"alias", "name: x\ntopology:\n  defaults: &d {kind: linux}\n  nodes:\n    n1: *d\n", "aliases"},
		{"merge key", "name: x\ntopology:\n  nodes:\n    n1:\n      <<: {kind: linux}\n", "merge keys"},
		{"bind without target", node + "      binds: [onlyone]\n", "want SOURCE:TARGET"},
		{"bind relative target", node + "      binds: [a:b]\n", "the target must be an absolute path"},
		{"bind option", node + "      binds: [a:/b:z]\n", `mount option "z" not supported`},
		{"bind too many colons", node + "      binds: [a:/b:ro:x]\n", "want SOURCE:TARGET"},
		{"bind over root", node + "      binds: [a:/]\n", "cannot bind over /"},
		{"bind home", node + "      binds: [~/a:/b]\n", "bad source path"},
		{"binds not a list", node + "      binds: a:/b\n", "must be a list"},
		{"exec quote", node + "      exec: [\"echo 'x\"]\n", "unterminated single quote"},
		{"exec dquote", node + "      exec: ['echo \"x']\n", "unterminated double quote"},
		{"exec backslash", node + "      exec: ['echo \\']\n", "backslash at the end"},
		{"exec empty", node + "      exec: ['  ']\n", "empty command"},
		{"exec mapping", node + "      exec: [{a: b}]\n", "must be a string"},
		{"env name", node + "      env: {1A: x}\n", "invalid environment variable name"},
		{"env list", node + "      env: [A]\n", "must be a mapping"},
		{"labels list", node + "      labels: [A]\n", "must be a mapping"},
		{"link one endpoint", node + "  links:\n    - endpoints: [n1:eth1]\n", "want two endpoints"},
		{"link no colon", two + "  links:\n    - endpoints: [n1, n2:eth1]\n", "want NODE:INTERFACE"},
		{"link host endpoint", node + "  links:\n    - endpoints: [n1:eth1, host:veth1]\n", `no node "host"`},
		{"link eth0", two + "  links:\n    - endpoints: [n1:eth0, n2:eth1]\n", "management interface"},
		{"link lo", two + "  links:\n    - endpoints: [n1:lo, n2:eth1]\n", "loopback"},
		{"link long ifname", two + "  links:\n    - endpoints: [n1:abcdefghijklmnop, n2:eth1]\n", "1 to 15 characters"},
		{"link slash", two + "  links:\n    - endpoints: [n1:a/b, n2:eth1]\n", "no '/'"},
		{"link reused interface", two + "  links:\n    - endpoints: [n1:eth1, n2:eth1]\n    - endpoints: [n1:eth1, n2:eth2]\n", "already used by topology.links[0]"},
		{"link extended format", two + "  links:\n    - type: veth\n      endpoints: [{node: n1, interface: eth1}, {node: n2, interface: eth1}]\n", "topology.links[0].type: unsupported key"},
		{"link endpoint mapping", two + "  links:\n    - endpoints: [{node: n1}, n2:eth1]\n", "must be a string"},
		{"link without endpoints", two + "  links:\n    - labels: {}\n", "endpoints: required"},
		{"links not a list", two + "  links: {a: b}\n", "topology.links: must be a list"},
		{"unterminated variable", "name: ${X\n", "unterminated variable reference"},
		{"bad variable name", "name: ${1X}\n", "bad name"},
		{"bad variable operator", "name: ${X:?err}\n", "want ${NAME}"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.text), "/labs/x.clab.yml", nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			assert.Contains(t, err.Error(), "/labs/x.clab.yml", "errors name the file")
		})
	}
}

func TestSplitWords(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"a b  c", []string{"a", "b", "c"}},
		{"  lead\ttab\n", []string{"lead", "tab"}},
		{`'single $x "q"'`, []string{`single $x "q"`}},
		{`"double \"q\" \\ \$ \a"`, []string{`double "q" \ $ \a`}},
		{`a\ b c`, []string{"a b", "c"}},
		{`x''y ""`, []string{"xy", ""}},
		{"a\\\nb", []string{"ab"}},
		{"", nil},
	} {
		got, err := splitWords(c.in)
		require.NoError(t, err, c.in)
		assert.Equal(t, c.want, got, c.in)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lab.clab.yml")
	require.NoError(t, os.WriteFile(path, []byte(sample), 0o644))
	t.Setenv("CLAB_TEST_UNUSED", "x")
	topo, err := Load(path)
	require.NoError(t, err)
	assert.Equal(t, path, topo.Path)
	assert.Equal(t, filepath.Join(dir, "kind"), topo.Nodes[0].Binds[1].Source)

	_, err = Load(filepath.Join(dir, "missing.clab.yml"))
	assert.ErrorContains(t, err, "no such file")

	big := filepath.Join(dir, "big.clab.yml")
	require.NoError(t, os.WriteFile(big, []byte(strings.Repeat("#", MaxFileSize+1)), 0o644))
	_, err = Load(big)
	assert.ErrorContains(t, err, "larger than")
}

// TestTopologiesLoad checks every topology in test/containerlab: it loads,
// its binds and start scripts exist in the repository, and every node has
// its configuration directory (a -nobfd or -bird variant's are its base's).
func TestTopologiesLoad(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(topoDir, "*.clab.yml"))
	require.NoError(t, err)
	require.Len(t, files, 8, "active-standby, active-active, two-onprem, vnet-to-vnet, the first three -nobfd, active-active-bird")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			topo, err := Load(f)
			require.NoError(t, err)
			short := strings.TrimSuffix(filepath.Base(f), ".clab.yml")
			short = strings.TrimSuffix(strings.TrimSuffix(short, "-nobfd"), "-bird")
			for _, n := range topo.Nodes {
				require.NotEmpty(t, n.Exec, "node %s starts something", n.Name)
				require.Equal(t, "bgpgw-lab:latest", n.Image, "node %s", n.Name)
				for _, b := range n.Binds {
					_, err := os.Stat(b.Source)
					assert.NoError(t, err, "node %s bind %s", n.Name, b)
				}
				for _, c := range n.Exec {
					require.Len(t, c.Args, 3, "node %s: sh SCRIPT TOPOLOGY/NODE", n.Name)
					script := strings.Replace(c.Args[1], "/run/lab/nodes", filepath.Join(topoDir, "nodes"), 1)
					_, err := os.Stat(script)
					assert.NoError(t, err, "node %s: script", n.Name)
					assert.Equal(t, short+"/"+n.Name, c.Args[2], "node %s: its configuration directory", n.Name)
					st, err := os.Stat(filepath.Join(topoDir, "nodes", c.Args[2]))
					if assert.NoError(t, err) {
						assert.True(t, st.IsDir())
					}
				}
				assert.Contains(t, []string{"bgpgw", "handbuilt"}, n.Env["GATEWAY"], "GATEWAY defaults to bgpgw")
			}
			for _, l := range topo.Links {
				assert.NotEqual(t, l.A.Node, l.B.Node)
			}
		})
	}
}
