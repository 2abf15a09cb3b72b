package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// LibipsecInterface is the TUN device of charon's kernel-libipsec plugin.
const LibipsecInterface = "ipsec0"

var ifnameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

// peerNames tracks the names of tunnels and cloud peers, which share one namespace.
type peerNames map[string]string

func (n peerNames) claim(d *decoder, path, name string) {
	if name == "" {
		return
	}
	if first, dup := n[name]; dup {
		d.errorf(path, "duplicate name %q (also %s)", name, first)
		return
	}
	n[name] = path
}

func (d *decoder) tunnels(root *obj, c *Config) []Tunnel {
	items, paths := root.list("tunnels")
	if len(items) == 0 {
		d.errorf("tunnels", "list at least one tunnel")
		return nil
	}
	names := peerNames{}
	type inside struct {
		path string
		p    netip.Prefix
	}
	var insides []inside
	var out []Tunnel
	ifIDs, ifaces := map[uint32]string{}, map[string]string{}
	for i, item := range items {
		o := d.object(paths[i], item)
		t := d.tunnel(o, c, i)
		names.claim(d, o.key("name"), t.Name)
		if c.IPsec.Mode == IPsecXFRM {
			if first, dup := ifIDs[t.IfID]; dup && t.IfID != 0 {
				d.errorf(o.key("if_id"), "%d is also the if_id of %s", t.IfID, first)
			}
			ifIDs[t.IfID] = o.key("if_id")
			if first, dup := ifaces[t.Interface]; dup && t.Interface != "" {
				d.errorf(o.key("interface"), "%q is also the interface of %s", t.Interface, first)
			}
			ifaces[t.Interface] = o.key("interface")
		}
		if t.InsideLocal.IsValid() {
			for _, prev := range insides {
				if prev.p.Overlaps(t.InsideLocal) {
					d.errorf(o.key("inside.local"), "%s overlaps %s (%s)", t.InsideLocal, prev.path, prev.p)
				}
			}
			insides = append(insides, inside{o.key("inside.local"), t.InsideLocal.Masked()})
		}
		out = append(out, t)
	}
	d.names = names
	return out
}

func (d *decoder) tunnel(o *obj, c *Config, index int) Tunnel {
	defer o.done()
	t := Tunnel{Name: d.name(o, "name")}
	t.Device = t.Name
	if _, ok := o.get("device"); ok {
		t.Device = d.name(o, "device")
	}
	managed := c.IPsec.Mode != IPsecNone
	t.LocalAddress = o.addr("local_address", managed)
	t.RemoteAddress = o.addr("remote_address", managed)
	if t.LocalAddress.IsValid() && t.LocalAddress == t.RemoteAddress {
		d.errorf(o.key("remote_address"), "same as local_address (%s)", t.LocalAddress)
	}
	t.PSK = o.secret("psk", managed)
	t.IKEProposals = d.proposals(o, "ike_proposals", managed, "aes256gcm16-prfsha384-ecp384")
	t.ESPProposals = d.proposals(o, "esp_proposals", managed, "aes256gcm16-ecp384")

	in := o.child("inside")
	if s, ok := in.str("local", true); ok {
		p, err := netip.ParsePrefix(s)
		switch {
		case err != nil:
			d.errorf(in.key("local"), "want ADDRESS/LENGTH, e.g. 169.254.21.1/30, got %q", s)
		case p.Addr() == p.Masked().Addr() && p.Bits() < p.Addr().BitLen()-1:
			d.errorf(in.key("local"), "%s is the network address of its subnet; give the interface address", s)
		default:
			t.InsideLocal = p
		}
	}
	t.InsideRemote = in.addr("remote", true)
	if t.InsideLocal.IsValid() && t.InsideRemote.IsValid() {
		switch {
		case !t.InsideLocal.Contains(t.InsideRemote):
			d.errorf(in.key("remote"), "%s is not in the inside subnet %s: the session is single-hop", t.InsideRemote, t.InsideLocal.Masked())
		case t.InsideLocal.Addr() == t.InsideRemote:
			d.errorf(in.key("remote"), "same as inside.local (%s)", t.InsideRemote)
		}
	}
	in.done()

	t.PeerASN = d.asn(o, "peer_asn")
	if t.PeerASN != 0 && t.PeerASN == c.BGP.ASN {
		d.errorf(o.key("peer_asn"), "%d is bgp.asn: tunnel sessions are eBGP, the peer needs its own AS", t.PeerASN)
	}
	ranges, paths := o.strings("accept")
	for i, s := range ranges {
		r, err := ParsePrefixRange(s)
		if err != nil {
			d.errorf(paths[i], "%v", err)
			continue
		}
		t.Accept = append(t.Accept, r)
	}
	t.MaxPrefixes = DefaultMaxPrefixes
	if n, ok := o.integer("max_prefixes", false, 1, 10_000_000); ok {
		t.MaxPrefixes = uint32(n)
	}
	if n, ok := o.integer("max_as_path", false, 1, 255); ok {
		t.MaxASPath = int(n)
	}
	t.Password = d.md5Password(o)
	t.BFD = d.bfd(o.child("bfd"))
	d.tunnelInterface(o, c, index, &t)
	return t
}

// tunnelInterface decodes if_id and interface: in xfrm mode each tunnel
// has its own XFRM interface (default name "bgpgw" + if_id, if_id default
// the tunnel's position from 1); in libipsec mode every tunnel shares
// charon's TUN device.
func (d *decoder) tunnelInterface(o *obj, c *Config, index int, t *Tunnel) {
	t.IfID = uint32(index + 1)
	if n, ok := o.integer("if_id", false, 1, 0xfffffffe); ok {
		t.IfID = uint32(n)
	}
	switch c.IPsec.Mode {
	case IPsecXFRM:
		t.Interface = fmt.Sprintf("bgpgw%d", t.IfID)
	case IPsecLibipsec:
		t.Interface = LibipsecInterface
	}
	if s, ok := o.str("interface", false); ok {
		switch {
		case c.IPsec.Mode != IPsecXFRM:
			d.errorf(o.key("interface"), "only used with ipsec.mode xfrm (mode %s uses %s)", c.IPsec.Mode, ifaceOrNone(t.Interface))
		case !ifnameRE.MatchString(s):
			d.errorf(o.key("interface"), "%q: an interface name is 1 to 15 letters, digits, '_', '.' or '-'", s)
		default:
			t.Interface = s
		}
	}
}

func ifaceOrNone(s string) string {
	if s == "" {
		return "no interface of bgpgw's"
	}
	return s
}

func (d *decoder) cloudPeers(root *obj, c *Config) []CloudPeer {
	items, paths := root.list("cloud_peers")
	var out []CloudPeer
	for i, item := range items {
		o := d.object(paths[i], item)
		p := d.cloudPeer(o, c)
		if d.names == nil {
			d.names = peerNames{}
		}
		d.names.claim(d, o.key("name"), p.Name)
		for j, prev := range out {
			if prev.Address.IsValid() && prev.Address == p.Address {
				d.errorf(o.key("address"), "%s is also cloud_peers[%d].address", p.Address, j)
			}
		}
		for j, t := range c.Tunnels {
			if t.InsideRemote.IsValid() && t.InsideRemote == p.Address {
				d.errorf(o.key("address"), "%s is also tunnels[%d].inside.remote", p.Address, j)
			}
		}
		out = append(out, p)
	}
	return out
}

func (d *decoder) cloudPeer(o *obj, c *Config) CloudPeer {
	defer o.done()
	p := CloudPeer{Name: d.name(o, "name")}
	p.Address = o.addr("address", true)
	p.LocalAddress = o.addr("local_address", false)
	p.PeerASN = d.asn(o, "peer_asn")
	if p.PeerASN != 0 && p.PeerASN == c.BGP.ASN {
		d.errorf(o.key("peer_asn"), "%d is bgp.asn: cloud-side sessions are eBGP in this version", p.PeerASN)
	}
	if n, ok := o.integer("multihop", false, 1, 255); ok {
		p.Multihop = int(n)
	}
	p.Password = d.md5Password(o)
	p.BFD = d.bfd(o.child("bfd"))
	if p.BFD.Enabled && (p.Multihop > 1 || p.BFD.Multihop) && !p.LocalAddress.IsValid() {
		d.errorf(o.key("local_address"), "required with bfd and multihop (multihop BFD is sent from it)")
	}
	return p
}

// md5Password reads a session's optional TCP-MD5 key (RFC 2385: at most 80 bytes).
func (d *decoder) md5Password(o *obj) Secret {
	s := o.secret("password", false)
	if s.IsSet() && len(s.Reveal()) > 80 {
		key := "password_file"
		if strings.HasPrefix(s.Source(), "env ") {
			key = "password_env"
		}
		d.errorf(o.key(key), "TCP-MD5 keys are at most 80 bytes")
		return Secret{}
	}
	return s
}

// proposals reads an IKE or ESP proposal list, required when bgpgw manages the tunnel.
func (d *decoder) proposals(o *obj, key string, required bool, example string) []string {
	before := len(d.errs)
	l, _ := o.strings(key)
	if required && len(l) == 0 && len(d.errs) == before {
		d.errorf(o.key(key), "required, e.g. [%s]", example)
	}
	return l
}

// PeerNames lists every BGP peer name: tunnels first, then cloud peers.
func (c *Config) PeerNames() []string {
	var out []string
	for _, t := range c.Tunnels {
		out = append(out, t.Name)
	}
	for _, p := range c.CloudPeers {
		out = append(out, p.Name)
	}
	return out
}
