package clab

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds the size of a topology file Load accepts.
const MaxFileSize = 1 << 20

// Topology is a parsed topology file, with topology.defaults and
// topology.kinds applied to every node.
type Topology struct {
	Name  string
	Path  string       // the file
	Dir   string       // its directory: relative bind sources start here
	Nodes []NodeConfig // in the order of the file
	Links []Link
}

// NodeConfig is one node as the runner sees it, after inheritance: image,
// kind and binds from the node, else its kind, else the defaults; exec
// commands of the defaults, then the kind, then the node; env merged, the
// node's values winning over the kind's over the defaults'.
type NodeConfig struct {
	Name  string
	Kind  string // always "linux"
	Image string // for containerlab; the runner does not use it
	Binds []Bind
	Exec  []Command
	Env   map[string]string
}

// Bind is one "source:target[:ro|rw]" entry of binds.
type Bind struct {
	Source   string // on the host: absolute, relative ones taken from the file's directory
	Target   string // inside the node: absolute, cleaned
	ReadOnly bool
}

// String writes the bind as in the file format.
func (b Bind) String() string {
	if b.ReadOnly {
		return b.Source + ":" + b.Target + ":ro"
	}
	return b.Source + ":" + b.Target
}

// Command is one exec entry: containerlab runs it without a shell, its
// words split as a POSIX shell would split them (quotes and backslashes,
// no expansion).
type Command struct {
	Line string
	Args []string
}

// Link is a veth pair between two node interfaces.
type Link struct {
	A, B Endpoint
}

// Endpoint is one "node:interface" end of a link.
type Endpoint struct {
	Node, Interface string
}

func (e Endpoint) String() string { return e.Node + ":" + e.Interface }

// Node returns the node called name.
func (t *Topology) Node(name string) (NodeConfig, bool) {
	for _, n := range t.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return NodeConfig{}, false
}

// Interfaces lists the interfaces the links give a node, in link order.
func (t *Topology) Interfaces(node string) []string {
	var out []string
	for _, l := range t.Links {
		for _, e := range []Endpoint{l.A, l.B} {
			if e.Node == node {
				out = append(out, e.Interface)
			}
		}
	}
	return out
}

// Load reads a topology file, expands ${VAR}, ${VAR:-default} and
// ${VAR:=default} from the process environment (unset without a default is
// empty, as in containerlab) and parses it.
func Load(path string) (*Topology, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("topology %s: %w", path, err)
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("topology %s: %w", abs, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("topology %s: larger than %d bytes", abs, MaxFileSize)
	}
	return Parse(data, abs, os.LookupEnv)
}

// Parse parses the text of a topology file found at path (used for
// messages and to resolve relative bind sources; the file system is not
// read). lookup resolves ${VAR} references; nil leaves every variable unset.
func Parse(data []byte, path string, lookup func(string) (string, bool)) (*Topology, error) {
	if lookup == nil {
		lookup = func(string) (string, bool) { return "", false }
	}
	p := &parser{path: path}
	t, err := p.parse(data, lookup)
	if err != nil {
		return nil, fmt.Errorf("topology %w", err)
	}
	return t, nil
}

type parser struct {
	path string
}

// errAt is an error about the key at keyPath, written at line.
func (p *parser) errAt(n *yaml.Node, keyPath string, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	msg := fmt.Sprintf(format, args...)
	if keyPath != "" {
		msg = keyPath + ": " + msg
	}
	if line > 0 {
		return fmt.Errorf("%s:%d: %s", p.path, line, msg)
	}
	return fmt.Errorf("%s: %s", p.path, msg)
}

// nodeDef is one entry of defaults, kinds or nodes before inheritance.
type nodeDef struct {
	line  *yaml.Node
	kind  string
	image string
	binds []Bind
	exec  []Command
	env   map[string]string
}

func (p *parser) parse(data []byte, lookup func(string) (string, bool)) (*Topology, error) {
	text, err := expandEnv(string(data), lookup)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.path, err)
	}
	dec := yaml.NewDecoder(strings.NewReader(text))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty file", p.path)
		}
		return nil, fmt.Errorf("%s: not valid YAML: %w", p.path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: more than one YAML document", p.path)
	}
	if len(doc.Content) != 1 {
		return nil, fmt.Errorf("%s: empty file", p.path)
	}
	root := doc.Content[0]
	if err := p.noAliases(root, 0); err != nil {
		return nil, err
	}
	t := &Topology{Path: p.path, Dir: filepath.Dir(p.path)}
	var topo *yaml.Node
	err = p.mapping(root, "", func(key string, k, v *yaml.Node) error {
		switch key {
		case "name":
			t.Name, err = p.scalar(v, "name")
			return err
		case "topology":
			topo = v
			return nil
		default:
			return p.errAt(k, key, "unsupported key (the namespace runner reads name and topology)")
		}
	})
	if err != nil {
		return nil, err
	}
	if t.Name == "" {
		return nil, p.errAt(root, "name", "required")
	}
	if strings.ContainsAny(t.Name, "/ \t\n") {
		return nil, p.errAt(root, "name", "%q: no slashes or white space", t.Name)
	}
	if topo == nil || topo.Kind != yaml.MappingNode {
		return nil, p.errAt(root, "topology", "required, a mapping")
	}

	var defaults nodeDef
	kinds := map[string]nodeDef{}
	var nodes []nodeDef
	var names []string
	var links *yaml.Node
	err = p.mapping(topo, "topology", func(key string, k, v *yaml.Node) error {
		switch key {
		case "defaults":
			defaults, err = p.nodeDef(v, "topology.defaults", true)
			return err
		case "kinds":
			return p.mapping(v, "topology.kinds", func(kind string, kk, kv *yaml.Node) error {
				where := "topology.kinds." + kind
				if kind != "linux" {
					return p.errAt(kk, where, "kind %q is not supported: the namespace runner runs only linux nodes", kind)
				}
				d, err := p.nodeDef(kv, where, false)
				kinds[kind] = d
				return err
			})
		case "nodes":
			return p.mapping(v, "topology.nodes", func(name string, nk, nv *yaml.Node) error {
				where := "topology.nodes." + name
				if !nodeNameRE.MatchString(name) {
					return p.errAt(nk, where, "invalid node name: want 1-20 of [a-z0-9_-], starting with a letter or digit (each node becomes a network namespace)")
				}
				d, err := p.nodeDef(nv, where, true)
				if d.line == nil {
					d.line = nk
				}
				nodes = append(nodes, d)
				names = append(names, name)
				return err
			})
		case "links":
			links = v
			return nil
		default:
			return p.errAt(k, "topology."+key, "unsupported key (the namespace runner reads defaults, kinds, nodes and links)")
		}
	})
	if err != nil {
		return nil, err
	}
	if len(nodes) == 0 {
		return nil, p.errAt(topo, "topology.nodes", "required: at least one node")
	}
	for i, d := range nodes {
		n, err := p.resolve(names[i], d, defaults, kinds)
		if err != nil {
			return nil, err
		}
		t.Nodes = append(t.Nodes, n)
	}
	if links != nil {
		if t.Links, err = p.links(links, t); err != nil {
			return nil, err
		}
	}
	return t, nil
}

var (
	nodeNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,19}$`)
	envNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// noAliases refuses anchors' aliases and merge keys: the runner reads only
// plain YAML (and never expands aliases, so no alias bomb).
func (p *parser) noAliases(n *yaml.Node, depth int) error {
	if depth > 50 {
		return p.errAt(n, "", "nested too deeply")
	}
	if n.Kind == yaml.AliasNode {
		return p.errAt(n, "", "YAML aliases (*name) are not supported")
	}
	for _, c := range n.Content {
		if err := p.noAliases(c, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// mapping calls fn for each key of a mapping node in order. A null value
// is an empty mapping. Keys must be plain scalars and unique.
func (p *parser) mapping(n *yaml.Node, where string, fn func(key string, k, v *yaml.Node) error) error {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return p.errAt(n, where, "must be a mapping")
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			return p.errAt(k, where, "keys must be plain scalars (no merge keys)")
		}
		if seen[k.Value] {
			return p.errAt(k, join(where, k.Value), "given twice")
		}
		seen[k.Value] = true
		if err := fn(k.Value, k, v); err != nil {
			return err
		}
	}
	return nil
}

func join(where, key string) string {
	if where == "" {
		return key
	}
	return where + "." + key
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// scalar reads a string, number or boolean as text; null is "".
func (p *parser) scalar(n *yaml.Node, where string) (string, error) {
	if isNull(n) {
		return "", nil
	}
	if n.Kind != yaml.ScalarNode {
		return "", p.errAt(n, where, "must be a string")
	}
	return n.Value, nil
}

// strings reads a list of scalars; null is an empty list.
func (p *parser) strings(n *yaml.Node, where string) ([]string, []*yaml.Node, error) {
	if isNull(n) {
		return nil, nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, nil, p.errAt(n, where, "must be a list")
	}
	var out []string
	for i, c := range n.Content {
		s, err := p.scalar(c, fmt.Sprintf("%s[%d]", where, i))
		if err != nil {
			return nil, nil, err
		}
		out = append(out, s)
	}
	return out, n.Content, nil
}

// nodeDef reads the keys of one node, kind or defaults entry. allowKind is
// false for entries of topology.kinds.
func (p *parser) nodeDef(n *yaml.Node, where string, allowKind bool) (nodeDef, error) {
	d := nodeDef{}
	if !isNull(n) {
		d.line = n
	}
	err := p.mapping(n, where, func(key string, k, v *yaml.Node) error {
		at := where + "." + key
		var err error
		switch key {
		case "kind":
			if !allowKind {
				return p.errAt(k, at, "not allowed in topology.kinds")
			}
			d.kind, err = p.scalar(v, at)
		case "image":
			d.image, err = p.scalar(v, at)
		case "binds":
			d.binds, err = p.binds(v, at)
		case "exec":
			d.exec, err = p.execs(v, at)
		case "env":
			d.env, err = p.env(v, at)
		case "labels":
			// Ignored by the runner; checked to be a mapping.
			err = p.mapping(v, at, func(string, *yaml.Node, *yaml.Node) error { return nil })
		default:
			err = p.errAt(k, at, "unsupported key (the namespace runner reads kind, image, binds, exec, env and labels)")
		}
		return err
	})
	return d, err
}

func (p *parser) binds(n *yaml.Node, where string) ([]Bind, error) {
	list, nodes, err := p.strings(n, where)
	if err != nil {
		return nil, err
	}
	var out []Bind
	for i, s := range list {
		at := fmt.Sprintf("%s[%d]", where, i)
		parts := strings.Split(s, ":")
		if len(parts) < 2 || len(parts) > 3 {
			return nil, p.errAt(nodes[i], at, "%q: want SOURCE:TARGET or SOURCE:TARGET:ro", s)
		}
		b := Bind{Source: parts[0], Target: parts[1]}
		if len(parts) == 3 {
			switch parts[2] {
			case "ro":
				b.ReadOnly = true
			case "rw":
			default:
				return nil, p.errAt(nodes[i], at, "%q: mount option %q not supported (ro or rw)", s, parts[2])
			}
		}
		if b.Source == "" || strings.ContainsAny(b.Source, "\x00\n") || strings.HasPrefix(b.Source, "~") {
			return nil, p.errAt(nodes[i], at, "%q: bad source path", s)
		}
		if !filepath.IsAbs(b.Source) {
			b.Source = filepath.Join(filepath.Dir(p.path), b.Source)
		}
		b.Source = filepath.Clean(b.Source)
		if !filepath.IsAbs(b.Target) || strings.ContainsAny(b.Target, "\x00\n") {
			return nil, p.errAt(nodes[i], at, "%q: the target must be an absolute path", s)
		}
		b.Target = filepath.Clean(b.Target)
		if b.Target == "/" {
			return nil, p.errAt(nodes[i], at, "%q: cannot bind over /", s)
		}
		out = append(out, b)
	}
	return out, nil
}

func (p *parser) execs(n *yaml.Node, where string) ([]Command, error) {
	list, nodes, err := p.strings(n, where)
	if err != nil {
		return nil, err
	}
	var out []Command
	for i, s := range list {
		args, err := splitWords(s)
		if err == nil && len(args) == 0 {
			err = errors.New("empty command")
		}
		if err != nil {
			return nil, p.errAt(nodes[i], fmt.Sprintf("%s[%d]", where, i), "%q: %v", s, err)
		}
		out = append(out, Command{Line: s, Args: args})
	}
	return out, nil
}

func (p *parser) env(n *yaml.Node, where string) (map[string]string, error) {
	out := map[string]string{}
	err := p.mapping(n, where, func(key string, k, v *yaml.Node) error {
		if !envNameRE.MatchString(key) {
			return p.errAt(k, where+"."+key, "invalid environment variable name")
		}
		s, err := p.scalar(v, where+"."+key)
		if err != nil {
			return err
		}
		if strings.ContainsRune(s, 0) {
			return p.errAt(v, where+"."+key, "NUL in value")
		}
		out[key] = s
		return nil
	})
	return out, err
}

// resolve applies defaults and the node's kind to a node.
func (p *parser) resolve(name string, d, defaults nodeDef, kinds map[string]nodeDef) (NodeConfig, error) {
	where := "topology.nodes." + name
	n := NodeConfig{Name: name, Kind: first(d.kind, defaults.kind)}
	if n.Kind == "" {
		return n, p.errAt(d.line, where+".kind", "required: set it on the node or in topology.defaults (linux)")
	}
	if n.Kind != "linux" {
		return n, p.errAt(d.line, where+".kind", "kind %q is not supported: the namespace runner runs only linux nodes", n.Kind)
	}
	k := kinds[n.Kind]
	n.Image = first(d.image, k.image, defaults.image)
	// A later bind to the same target replaces an earlier one.
	for _, b := range slices.Concat(defaults.binds, k.binds, d.binds) {
		n.Binds = slices.DeleteFunc(n.Binds, func(x Bind) bool { return x.Target == b.Target })
		n.Binds = append(n.Binds, b)
	}
	n.Exec = slices.Concat(defaults.exec, k.exec, d.exec)
	n.Env = map[string]string{}
	for _, m := range []map[string]string{defaults.env, k.env, d.env} {
		for key, v := range m {
			n.Env[key] = v
		}
	}
	return n, nil
}

func first(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// links reads topology.links.
func (p *parser) links(n *yaml.Node, t *Topology) ([]Link, error) {
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, p.errAt(n, "topology.links", "must be a list")
	}
	used := map[Endpoint]string{}
	var out []Link
	for i, ln := range n.Content {
		where := fmt.Sprintf("topology.links[%d]", i)
		var eps *yaml.Node
		err := p.mapping(ln, where, func(key string, k, v *yaml.Node) error {
			switch key {
			case "endpoints":
				eps = v
			case "labels":
			default:
				return p.errAt(k, where+"."+key, "unsupported key (the namespace runner reads endpoints: [\"node:if\", \"node:if\"])")
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if isNull(ln) || eps == nil {
			return nil, p.errAt(ln, where+".endpoints", "required")
		}
		list, nodes, err := p.strings(eps, where+".endpoints")
		if err != nil {
			return nil, err
		}
		if len(list) != 2 {
			return nil, p.errAt(eps, where+".endpoints", "want two endpoints, got %d", len(list))
		}
		var ends [2]Endpoint
		for j, s := range list {
			at := fmt.Sprintf("%s.endpoints[%d]", where, j)
			node, ifname, ok := strings.Cut(s, ":")
			if !ok {
				return nil, p.errAt(nodes[j], at, "%q: want NODE:INTERFACE", s)
			}
			if _, found := t.Node(node); !found {
				return nil, p.errAt(nodes[j], at, "%q: no node %q (host, mgmt-net, macvlan and bridge endpoints are not supported)", s, node)
			}
			if err := checkIfName(ifname); err != nil {
				return nil, p.errAt(nodes[j], at, "%q: %v", s, err)
			}
			e := Endpoint{Node: node, Interface: ifname}
			if prev, dup := used[e]; dup {
				return nil, p.errAt(nodes[j], at, "%q: interface already used by %s", s, prev)
			}
			used[e] = where
			ends[j] = e
		}
		out = append(out, Link{A: ends[0], B: ends[1]})
	}
	return out, nil
}
