package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/internal/lab"
	"github.com/bgpgw/bgpgw/pkg/api"
)

// planTunnel is tunnel n with accept-list accept and, when bfdRx is set,
// BFD on with that receive interval (the on-prem FRR runs no BFD: the
// session never comes Up and changes nothing).
func planTunnel(n int, accept, bfdRx string) string {
	bfd := ""
	if bfdRx != "" {
		bfd = fmt.Sprintf(", bfd: {enabled: true, min_rx: %s}", bfdRx)
	}
	return fmt.Sprintf("  - {name: t%[1]d, inside: {local: 169.254.2%[1]d.1/30, remote: 169.254.2%[1]d.2}, peer_asn: 65010, accept: [%q]%s}\n",
		n, accept, bfd)
}

// TestPlan: for a series of reloads (add a tunnel, remove one, change the
// announced prefixes, change a BFD timer, change an accept-list, an
// invalid file, a restart-only change), what `bgpgw plan` predicted is
// exactly what the on-prem FRR and the kernel show once the reload is
// applied: the prefixes FRR receives from every peer, which sessions FRR
// saw reset and which it did not, the kernel routes; and its exit code
// says whether anything changes (0, 1) or the file is invalid (2).
func TestPlan(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	l, gwNS, frr := reloadLab(t)
	file := func(asn, announce string, tunnels ...string) string {
		return fmt.Sprintf(reloadGateway, l.SocketPath("gw1"), l.Dir(), asn, announce, strings.Join(tunnels, ""))
	}
	const narrow, wide = "10.1.0.0/16", "10.1.0.0/16 le 24"
	gw, err := l.StartGateway(ctx, gwNS, bgpgwBin, "gw1",
		file("65515", "10.10.0.0/16", planTunnel(1, narrow, "300ms"), planTunnel(2, narrow, "")))
	require.NoError(t, err)
	diag, routes := reloadDiag(ctx, gw), frrRoutes(ctx, frr)
	nbr := func(peer string) string { return "169.254.2" + strings.TrimPrefix(peer, "t") + ".1" }
	require.NoError(t, lab.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		return slices.Equal(routes(nbr("t1")), []string{"10.10.0.0/16"}) &&
			slices.Equal(routes(nbr("t2")), []string{"10.10.0.0/16"}), nil
	}), diag())
	require.NoError(t, lab.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		st, err := gw.Status(ctx)
		return err == nil && len(st.Routes) == 1 && len(st.Routes[0].NextHops) == 2, nil
	}), "the on-prem prefix is routed over both tunnels\n%s", diag())

	// plan runs `bgpgw plan --json` on the content and returns the plan and
	// the exit code.
	plan := func(content string) (api.Plan, int) {
		t.Helper()
		path := l.Dir() + "/plan.yaml"
		require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
		out, err := gw.NS.Command(ctx, gw.Bin, "plan", "--config", path, "--json", "--socket", gw.Socket).Output()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		var p api.Plan
		require.NoError(t, json.Unmarshal(out, &p), "plan output: %s", out)
		return p, code
	}

	// Nothing changes: exit 0.
	p, code := plan(file("65515", "10.10.0.0/16", planTunnel(1, narrow, "300ms"), planTunnel(2, narrow, "")))
	assert.Equal(t, 0, code, "%+v", p)
	assert.False(t, p.Changed)

	steps := []struct {
		name    string
		content string
		check   func(t *testing.T, p api.Plan)
	}{
		{"add t3", file("65515", "10.10.0.0/16", planTunnel(1, narrow, "300ms"), planTunnel(2, narrow, ""), planTunnel(3, narrow, "")),
			func(t *testing.T, p api.Plan) {
				assert.Equal(t, "added", planPeer(p, "t3").Session)
				// What t3's peer will send is not known before it is up.
				assert.Empty(t, p.Routes.Add)
			}},
		{"remove t2", file("65515", "10.10.0.0/16", planTunnel(1, narrow, "300ms"), planTunnel(3, narrow, "")),
			func(t *testing.T, p api.Plan) {
				assert.Equal(t, "removed", planPeer(p, "t2").Session)
				assert.Equal(t, []string{"10.10.0.0/16"}, planPeer(p, "t2").Withdraw)
			}},
		{"change prefixes", file("65515", "10.10.0.0/16, 10.30.0.0/24", planTunnel(1, narrow, "300ms"), planTunnel(3, narrow, "")),
			func(t *testing.T, p api.Plan) {
				for _, peer := range []string{"t1", "t3"} {
					pp := planPeer(p, peer)
					assert.Empty(t, pp.Session, peer)
					require.Len(t, pp.Announce, 1, peer)
					assert.Equal(t, "10.30.0.0/24", pp.Announce[0].Prefix, peer)
				}
			}},
		{"change a BFD timer", file("65515", "10.10.0.0/16, 10.30.0.0/24", planTunnel(1, narrow, "500ms"), planTunnel(3, narrow, "")),
			func(t *testing.T, p api.Plan) {
				require.Len(t, p.BFD, 1)
				assert.Equal(t, api.PlanItem{Name: "t1", Change: "updated", Why: p.BFD[0].Why}, p.BFD[0])
				for _, pp := range p.Peers {
					assert.Empty(t, pp.Session, "no session resets for a BFD timer: %s", pp.Name)
				}
			}},
		{"change an accept-list", file("65515", "10.10.0.0/16, 10.30.0.0/24", planTunnel(1, narrow, "500ms"), planTunnel(3, wide, "")),
			func(t *testing.T, p api.Plan) {
				assert.Equal(t, "reset", planPeer(p, "t3").Session)
				assert.Contains(t, planPeer(p, "t3").Why, "accept")
				assert.Empty(t, planPeer(p, "t1").Session)
			}},
	}
	for _, step := range steps {
		p, code := plan(step.content)
		require.Equal(t, 1, code, "%s: plan exits 1 when something changes: %+v", step.name, p)
		require.True(t, p.Changed, step.name)
		step.check(t, p)
		before, err := frr.Neighbors(ctx)
		require.NoError(t, err)
		st, err := gw.Status(ctx)
		require.NoError(t, err)
		routesBefore := statusRoutes(st.Routes)

		require.NoError(t, os.WriteFile(gw.Config, []byte(step.content), 0o600))
		out, err := gw.CLI(ctx, "reload")
		require.NoError(t, err, "%s: reload: %s", step.name, out)
		assert.Contains(t, out, "reloaded")

		// What FRR receives from every peer converges to the plan's.
		var last string
		ok := lab.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
			var diff []string
			for _, pp := range p.Peers {
				want := []string{}
				for _, a := range pp.After {
					want = append(want, a.Prefix)
				}
				slices.Sort(want)
				if got := routes(nbr(pp.Name)); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
					diff = append(diff, fmt.Sprintf("%s: FRR has %v, plan said %v", pp.Name, got, want))
				}
			}
			st, err := gw.Status(ctx)
			if err != nil {
				return false, nil
			}
			// Settled: every tunnel session is up with the on-prem prefix
			// in, so the next plan starts from a state that no longer moves.
			for _, sp := range st.Peers {
				if sp.Kind == "tunnel" && (sp.State != "established" || !slices.Equal(sp.Received, []string{"10.1.0.0/16"})) {
					diff = append(diff, fmt.Sprintf("%s: %s, received %v", sp.Name, sp.State, sp.Received))
				}
			}
			wantRoutes := slices.DeleteFunc(slices.Clone(routesBefore), func(r string) bool {
				return slices.Contains(planRoutes(p.Routes.Remove), r)
			})
			wantRoutes = append(wantRoutes, planRoutes(p.Routes.Add)...)
			slices.Sort(wantRoutes)
			// A new session's routes are not predicted (its peer sends
			// nothing yet): next hops through added tunnels are left out.
			var added []string
			for _, pp := range p.Peers {
				if pp.Session == "added" {
					added = append(added, "169.254.2"+strings.TrimPrefix(pp.Name, "t")+".2")
				}
			}
			got := slices.Clone(st.Routes)
			for i := range got {
				got[i].NextHops = slices.DeleteFunc(slices.Clone(got[i].NextHops), func(h string) bool { return slices.Contains(added, h) })
			}
			if got := statusRoutes(got); !slices.Equal(got, wantRoutes) {
				diff = append(diff, fmt.Sprintf("kernel routes %v, plan said %v", got, wantRoutes))
			}
			last = strings.Join(diff, "; ")
			return len(diff) == 0, nil
		})
		require.NoError(t, ok, "%s: after the reload: %s\n%s", step.name, last, diag())
		// FRR saw exactly the sessions the plan said reset.
		after, err := frr.Neighbors(ctx)
		require.NoError(t, err)
		for _, pp := range p.Peers {
			b, a := before[nbr(pp.Name)], after[nbr(pp.Name)]
			switch pp.Session {
			case "":
				assert.Equal(t, b.Established, a.Established, "%s: %s was not reset", step.name, pp.Name)
				assert.Equal(t, b.Dropped, a.Dropped, "%s: %s did not drop", step.name, pp.Name)
			case "reset":
				assert.Greater(t, a.Established, b.Established, "%s: %s was reset", step.name, pp.Name)
			}
		}
	}

	// An invalid file and a restart-only change: exit 2 naming the key,
	// and nothing is applied.
	for _, content := range []string{
		file("0", "10.10.0.0/16", planTunnel(1, narrow, "")),
		file("65516", "10.10.0.0/16", planTunnel(1, narrow, "")),
	} {
		p, code := plan(content)
		assert.Equal(t, 2, code, "%+v", p)
		assert.Contains(t, strings.Join(p.Invalid, "\n"), "bgp.asn")
	}
	assert.Equal(t, []string{"10.10.0.0/16", "10.30.0.0/24"}, routes(nbr("t1")), "plan applies nothing")
	assert.Equal(t, []string{"10.10.0.0/16", "10.30.0.0/24"}, routes(nbr("t3")))
	require.False(t, gw.Proc.Exited())
}

func planPeer(p api.Plan, name string) api.PlanPeer {
	for _, pp := range p.Peers {
		if pp.Name == name {
			return pp
		}
	}
	return api.PlanPeer{}
}

func planRoutes(rs []api.Route) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.Prefix+" via "+strings.Join(r.NextHops, " "))
	}
	return out
}

func statusRoutes(rs []api.Route) []string {
	out := planRoutes(rs)
	slices.Sort(out)
	return out
}
