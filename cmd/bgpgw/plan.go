package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bgpgw/bgpgw/pkg/api"
	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/configfile"
)

// plan's exit codes beyond exitOK and exitConfig: the file would change
// something; the plan could not be made (no daemon, say).
const (
	exitChanges    = 1
	exitPlanFailed = 3
)

// newPlanCmd is `bgpgw plan --config FILE [--json]`.
func newPlanCmd(stdout io.Writer) *cobra.Command {
	var file, socket string
	var asJSON bool
	c := &cobra.Command{
		Use:   "plan --config FILE [--json]",
		Short: "Show what reloading FILE would change, without applying anything; exit 0: nothing, 1: changes, 2: FILE invalid, 3: no plan (no daemon)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			abs, err := filepath.Abs(file)
			if err != nil {
				return codedError{exitPlanFailed, err}
			}
			if !c.Flags().Changed("socket") {
				// The file names the socket; a file too broken to say
				// leaves the default, and the daemon names what is wrong.
				if s, err := configfile.SocketFromFile(abs); err == nil {
					socket = s
				}
			}
			p, err := api.NewClient(socket).Plan(c.Context(), abs)
			if err != nil {
				return codedError{exitPlanFailed, err}
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(p); err != nil {
					return codedError{exitPlanFailed, err}
				}
			} else {
				printPlan(stdout, p)
			}
			switch {
			case len(p.Invalid) > 0:
				return codedError{exitConfig, fmt.Errorf("%s: invalid, nothing would be applied", file)}
			case p.Changed:
				return codedError{exitChanges, nil}
			}
			return nil
		},
	}
	c.Flags().StringVar(&file, "config", "", "configuration file to plan (required)")
	c.Flags().StringVar(&socket, "socket", config.DefaultSocket, "API socket of the running daemon (default: the file's api.socket)")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	_ = c.MarkFlagRequired("config")
	return c
}

// printPlan writes a plan for people: what changes, peer by peer.
func printPlan(w io.Writer, p api.Plan) {
	if len(p.Invalid) > 0 {
		fmt.Fprintf(w, "%s: invalid, nothing would be applied:\n", p.File)
		for _, l := range p.Invalid {
			fmt.Fprintf(w, "  %s\n", l)
		}
		return
	}
	if !p.Changed {
		fmt.Fprintln(w, "nothing changes")
		return
	}
	for _, s := range p.Settings {
		fmt.Fprintf(w, "setting  %s\n", s)
	}
	for _, pp := range p.Peers {
		if pp.Session == "" && len(pp.Announce)+len(pp.Withdraw)+len(pp.Update) == 0 {
			continue
		}
		fmt.Fprintf(w, "peer     %s (%s)", pp.Name, pp.Kind)
		if pp.Session != "" {
			fmt.Fprintf(w, ": session %s", pp.Session)
			if pp.Why != "" {
				fmt.Fprintf(w, " (%s)", pp.Why)
			}
		}
		fmt.Fprintln(w)
		for _, a := range pp.Announce {
			fmt.Fprintf(w, "           + %s\n", prefixText(a))
		}
		for _, a := range pp.Update {
			fmt.Fprintf(w, "           ~ %s\n", prefixText(a))
		}
		for _, pfx := range pp.Withdraw {
			fmt.Fprintf(w, "           - %s\n", pfx)
		}
	}
	for _, group := range []struct {
		kind  string
		items []api.PlanItem
	}{{"tunnel", p.Tunnels}, {"bfd", p.BFD}, {"check", p.Checks}} {
		for _, it := range group.items {
			fmt.Fprintf(w, "%-8s %s %s", group.kind, it.Name, it.Change)
			if it.Why != "" {
				fmt.Fprintf(w, " (%s)", it.Why)
			}
			fmt.Fprintln(w)
		}
	}
	for _, r := range p.Routes.Add {
		fmt.Fprintf(w, "route    + %s via %s\n", r.Prefix, strings.Join(r.NextHops, ", "))
	}
	for _, r := range p.Routes.Remove {
		fmt.Fprintf(w, "route    - %s via %s\n", r.Prefix, strings.Join(r.NextHops, ", "))
	}
	for _, e := range p.Errors {
		fmt.Fprintf(w, "error    %s\n", e)
	}
	if p.Assumes != "" {
		fmt.Fprintf(w, "(%s)\n", p.Assumes)
	}
}

func prefixText(a api.PlanPrefix) string {
	var attrs []string
	if a.Prepend > 0 {
		attrs = append(attrs, fmt.Sprintf("prepend %d", a.Prepend))
	}
	if a.MED != nil {
		attrs = append(attrs, fmt.Sprintf("med %d", *a.MED))
	}
	attrs = append(attrs, a.Communities...)
	if len(attrs) == 0 {
		return a.Prefix
	}
	return a.Prefix + " [" + strings.Join(attrs, ", ") + "]"
}
