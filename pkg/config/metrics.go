package config

import (
	"net"
	"net/netip"
)

// Metrics is the Prometheus endpoint.
type Metrics struct {
	// Listen is the address:port of the HTTP server that serves /metrics;
	// empty: off.
	Listen string
}

// DefaultMetricsListen is where /metrics is served unless configured.
const DefaultMetricsListen = "127.0.0.1:9479"

func (d *decoder) metrics(o *obj) Metrics {
	defer o.done()
	m := Metrics{Listen: DefaultMetricsListen}
	if v, ok := o.get("listen"); ok {
		if s, isStr := v.(string); isStr && (s == "" || s == "off") {
			return Metrics{}
		}
		m.Listen = d.listenAddr(o, "listen", false)
	}
	return m
}

// loopbackListen decodes an optional address:port that must be a loopback
// address (a control interface that is never exposed).
func (d *decoder) loopbackListen(o *obj, k, def string) string {
	if _, ok := o.get(k); !ok {
		return def
	}
	return d.listenAddr(o, k, true)
}

func (d *decoder) listenAddr(o *obj, k string, loopbackOnly bool) string {
	s, ok := o.str(k, true)
	if !ok {
		return ""
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		host, port, splitErr := net.SplitHostPort(s)
		if splitErr != nil || host != "localhost" {
			d.errorf(o.key(k), "want ADDRESS:PORT, e.g. 127.0.0.1:9479 or [::1]:9479, got %q", s)
			return ""
		}
		ap, err = netip.ParseAddrPort("127.0.0.1:" + port)
		if err != nil {
			d.errorf(o.key(k), "bad port in %q", s)
			return ""
		}
	}
	if ap.Port() == 0 {
		d.errorf(o.key(k), "give a port other than 0, got %q", s)
		return ""
	}
	if loopbackOnly && !ap.Addr().IsLoopback() {
		d.errorf(o.key(k), "%s is not a loopback address: this API has no authentication, bind it to 127.0.0.1 or ::1", ap.Addr())
		return ""
	}
	return ap.String()
}
