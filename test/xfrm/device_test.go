//go:build guest

package xfrm

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/bgpgw/bgpgw/internal/lab"
)

// vpnKind names an on-prem VPN device implementation.
type vpnKind string

const (
	strongSwan vpnKind = "strongswan"
	libreswan  vpnKind = "libreswan"
)

// vpnDevice is the on-prem VPN device: route-based, one XFRM interface per
// tunnel (gateway and family), responder only.
type vpnDevice interface {
	// terminate makes the device delete the SAs of its connection conn,
	// telling the gateway (the far end deleting the SA).
	terminate(ctx context.Context, conn string) error
	// spis lists the SPIs of its installed CHILD_SAs, as ip xfrm shows
	// them (0x and 8 hex digits); nil when the device cannot tell.
	spis(ctx context.Context) ([]string, error)
	logTail(ctx context.Context, n int) string
}

// startDevice makes op's XFRM interfaces and starts the VPN device on op.
func startDevice(ctx context.Context, x *xlab) (vpnDevice, error) {
	if err := x.opInterfaces(ctx); err != nil {
		return nil, err
	}
	switch x.opts.device {
	case "", strongSwan:
		return startStrongswanDevice(ctx, x)
	case libreswan:
		return startLibreswanDevice(ctx, x)
	}
	return nil, fmt.Errorf("no VPN device %q", x.opts.device)
}

// opInterfaces creates op's XFRM interface of every gateway tunnel, with its
// inside address (route-based devices are configured so; libreswan uses an
// existing ipsecN).
func (x *xlab) opInterfaces(ctx context.Context) error {
	for _, g := range x.gws {
		for _, s := range g.tunnels {
			for _, args := range [][]string{
				{"link", "add", s.opIface, "type", "xfrm", "if_id", fmt.Sprint(s.opIfID)},
				{"addr", "add", s.opInside, "dev", s.opIface},
				{"link", "set", s.opIface, "up"},
			} {
				if _, err := x.op.IP(ctx, args...); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// strongswanDevice is strongSwan's charon with kernel ESP, loaded with
// swanctl: one connection per gateway tunnel, bound to op's XFRM interface
// by its if_id. unique = replace: a gateway that gives up on an IKE_SA
// the device completes, and starts another, must not leave the device with
// two IKE_SAs for one tunnel (it sent into the abandoned one's CHILD_SA).
type strongswanDevice struct {
	ch *lab.Charon
}

func startStrongswanDevice(ctx context.Context, x *xlab) (*strongswanDevice, error) {
	ch, err := x.l.StartCharonKernel(x.op, "op", false)
	if err != nil {
		return nil, err
	}
	var conns, secrets strings.Builder
	for _, g := range x.gws {
		for _, s := range g.tunnels {
			local := opWAN4
			if s.v6 {
				local = opWAN6
			}
			fmt.Fprintf(&conns, `  %[1]s {
    version = 2
    local_addrs = %[2]s
    remote_addrs = %[3]s
    proposals = aes256gcm16-prfsha384-ecp384
    dpd_delay = 10s
    unique = replace
    local {
      auth = psk
      id = %[2]s
    }
    remote {
      auth = psk
      id = %[3]s
    }
    children {
      %[1]s {
        local_ts = 0.0.0.0/0,::/0
        remote_ts = 0.0.0.0/0,::/0
        esp_proposals = aes256gcm16-ecp384
        if_id_in = %[4]d
        if_id_out = %[4]d
        start_action = none
      }
    }
  }
`, s.opConn, local, s.gwOuter, s.opIfID)
			fmt.Fprintf(&secrets, "  ike-%s {\n    id = %s\n    secret = \"%s\"\n  }\n", s.opConn, s.gwOuter, labPSK)
		}
	}
	conf := "connections {\n" + conns.String() + "}\nsecrets {\n" + secrets.String() + "}\n"
	if err := ch.Load(ctx, conf); err != nil {
		return nil, err
	}
	return &strongswanDevice{ch: ch}, nil
}

func (d *strongswanDevice) terminate(ctx context.Context, conn string) error {
	_, err := d.ch.Swanctl(ctx, "--terminate", "--ike", conn, "--timeout", "5")
	return err
}

func (d *strongswanDevice) spis(ctx context.Context) ([]string, error) { return charonSPIs(ctx, d.ch) }

func (d *strongswanDevice) logTail(ctx context.Context, n int) string {
	sas, _ := d.ch.Swanctl(ctx, "--list-sas")
	return sas + "\n" + d.ch.LogTail(n)
}

// charonSPIs lists the SPIs of every CHILD_SA a charon holds, in any state.
func charonSPIs(ctx context.Context, ch *lab.Charon) ([]string, error) {
	out, err := ch.Swanctl(ctx, "--list-sas")
	if err != nil {
		return nil, err
	}
	return parseSwanctlSPIs(out), nil
}

var swanctlSPI = regexp.MustCompile(`(?m)^\s+(?:in|out)\s+([0-9a-f]{8})\b`)

// parseSwanctlSPIs reads the "in  c0b3c1a7, ..." and "out ..." lines of
// swanctl --list-sas, sorted, as ip xfrm writes them.
func parseSwanctlSPIs(out string) []string {
	var spis []string
	for _, m := range swanctlSPI.FindAllStringSubmatch(out, -1) {
		spis = append(spis, "0x"+m[1])
	}
	slices.Sort(spis)
	return slices.Compact(spis)
}
