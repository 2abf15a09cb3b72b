package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/bgpgw/bgpgw/pkg/api"
)

// printRejected is `bgpgw status --rejected`: per peer that had something
// refused (or whose session is held down, max-prefix among the causes),
// the count by reason, then each refused route with its reason.
func printRejected(w io.Writer, st api.Status) {
	shown := false
	for _, p := range st.Peers {
		if p.RejectedCount == 0 && p.LastError == "" {
			continue
		}
		shown = true
		fmt.Fprintf(w, "peer %s (%s, AS %d): %d refused", p.Name, p.Address, p.PeerASN, p.RejectedCount)
		if len(p.RejectedReasons) > 0 {
			var by []string
			for _, r := range slices.Sorted(maps.Keys(p.RejectedReasons)) {
				by = append(by, fmt.Sprintf("%s %d", r, p.RejectedReasons[r]))
			}
			fmt.Fprintf(w, " (%s)", strings.Join(by, ", "))
		}
		fmt.Fprintln(w)
		if p.LastError != "" {
			fmt.Fprintf(w, "  session: %s\n", p.LastError)
		}
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		for _, r := range p.RejectedRoutes {
			path := r.ASPath
			if path == "" {
				path = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s: %s\n", r.Prefix, path, r.Reason, r.Detail)
		}
		_ = tw.Flush()
		if n := p.RejectedCount - len(p.RejectedRoutes); n > 0 {
			fmt.Fprintf(w, "  ... and %d more (status lists the first %d)\n", n, api.MaxRejectedRoutes)
		}
	}
	if !shown {
		fmt.Fprintln(w, "no peer had a route refused")
	}
}
