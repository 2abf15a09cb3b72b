// Command demo builds a small lab in network namespaces, with two bgpgw
// instances (active-active) and an on-prem FRR router, shows what each
// side sees, drains one instance, and tears everything down. `make demo`
// runs it; it needs root.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bgpgw/bgpgw/internal/lab"
)

const gwConfig = `# bgpgw %[1]s (demo: tunnels are plain veth links, ipsec.mode none)
instance: {name: %[1]s, mode: active-active}
bgp: {asn: 65515, router_id: %[2]s}
announce: [10.10.0.0/16, 10.20.0.0/24]
ipsec: {mode: none}
tunnels:
  - name: onprem
    inside: {local: %[3]s/30, remote: %[4]s}
    peer_asn: 65010
    accept: ["10.1.0.0/16 le 24"]
    max_prefixes: 100
api: {socket: %[5]s}
drain: {state_file: %[6]s}
`

const onpremConfig = `frr defaults datacenter
hostname onprem
!
ip route 10.1.0.0/16 blackhole
ip route 10.1.7.0/24 blackhole
ip route 0.0.0.0/0 blackhole
!
router bgp 65010
 bgp router-id 198.51.100.1
 no bgp ebgp-requires-policy
 bgp bestpath as-path multipath-relax
 neighbor 169.254.21.1 remote-as 65515
 neighbor 169.254.21.1 ttl-security hops 1
 neighbor 169.254.22.1 remote-as 65515
 neighbor 169.254.22.1 ttl-security hops 1
 address-family ipv4 unicast
  redistribute static
  maximum-paths 4
 exit-address-family
!
`

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) {
	fmt.Printf("\n=== "+format+"\n", args...)
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, err := lab.New(func(string, ...any) {})
	if err != nil {
		return err
	}
	defer func() {
		step("tearing down lab %s", l.Prefix())
		if err := l.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "demo: cleanup:", err)
		}
	}()

	step("building bgpgw")
	bin, err := lab.BuildBgpgw(ctx, l.Dir())
	if err != nil {
		return err
	}
	step("lab %s: on-prem FRR router (AS 65010) with a link to each gateway instance (AS 65515)", l.Prefix())
	op, err := l.Netns("op")
	if err != nil {
		return err
	}
	var gws []*lab.Gateway
	for i, name := range []string{"gw1", "gw2"} {
		ns, err := l.Netns(name)
		if err != nil {
			return err
		}
		local, remote := fmt.Sprintf("169.254.%d.1", 21+i), fmt.Sprintf("169.254.%d.2", 21+i)
		if err := l.Link(ns, "tun0", local+"/30", op, "to"+name, remote+"/30"); err != nil {
			return err
		}
		cfg := fmt.Sprintf(gwConfig, name, fmt.Sprintf("192.0.2.%d", i+1), local, remote, l.SocketPath(name),
			filepath.Join(l.Dir(), name+".drained"))
		g, err := l.StartGateway(ctx, ns, bin, name, cfg)
		if err != nil {
			return err
		}
		gws = append(gws, g)
	}
	frr, err := l.StartFRR(op, l.Prefix()+"op", onpremConfig, "zebra", "bgpd", "staticd")
	if err != nil {
		return err
	}

	step("waiting for both sessions")
	err = lab.Poll(ctx, 200*time.Millisecond, func() (bool, error) {
		for _, g := range gws {
			p, ok, err := g.Peer(ctx, "onprem")
			if err != nil || !ok || p.State != "established" || len(p.Received) == 0 {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("sessions did not come up: %w\n%s\n%s", err, gws[0].LogTail(20), frr.LogTail(20))
	}

	step("on-prem FRR: BGP table (the cloud prefixes arrive from both instances)")
	out, err := frr.Vtysh(ctx, "show bgp ipv4 unicast")
	if err != nil {
		return err
	}
	fmt.Print(out)
	step("on-prem FRR: kernel routes toward the cloud side (ECMP over both instances)")
	out, err = frr.Vtysh(ctx, "show ip route 10.10.0.0/16")
	if err != nil {
		return err
	}
	fmt.Print(out)
	for _, g := range gws {
		step("bgpgw status on %s (the default route and anything outside the accept-list are refused)", g.Name)
		out, err := g.CLI(ctx, "status")
		if err != nil {
			return err
		}
		fmt.Print(out)
		out, err = g.NS.IP(ctx, "route", "show", "proto", "201")
		if err != nil {
			return err
		}
		fmt.Printf("kernel routes installed by bgpgw on %s:\n%s", g.Name, out)
	}

	step("bgpgw drain on gw1: it re-announces with GRACEFUL_SHUTDOWN (65535:0) and a prepend")
	if _, err := gws[0].CLI(ctx, "drain"); err != nil {
		return err
	}
	err = lab.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		out, err := frr.Vtysh(ctx, "show bgp ipv4 unicast 10.10.0.0/16")
		return strings.Contains(out, "graceful-shutdown") || strings.Contains(out, "65535:0"), err
	})
	if err != nil {
		return fmt.Errorf("drain not seen by FRR: %w", err)
	}
	out, err = frr.Vtysh(ctx, "show bgp ipv4 unicast 10.10.0.0/16")
	if err != nil {
		return err
	}
	fmt.Print(out)
	if _, err := gws[0].CLI(ctx, "undrain"); err != nil {
		return err
	}
	step("demo finished: both instances announced the cloud prefixes, refused what they should, and gw1 drained")
	return nil
}
