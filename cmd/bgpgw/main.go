// Command bgpgw is the highly available VPN gateway daemon and its CLI:
// run, validate, plan, status, drain, undrain, reload, role and version.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bgpgw/bgpgw/pkg/api"
	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/configfile"
	"github.com/bgpgw/bgpgw/pkg/daemon"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes.
const (
	exitOK     = 0
	exitError  = 1
	exitConfig = 2
)

// exitError carries an exit code through cobra.
type codedError struct {
	code int
	err  error
}

func (e codedError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}
func (e codedError) Unwrap() error { return e.err }

func main() {
	os.Exit(execute(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// execute runs the CLI and returns the process exit code.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := newRootCmd(stdout, stderr)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ce codedError
	if errors.As(err, &ce) && ce.err == nil {
		return ce.code // the output said it all (bgpgw plan: changes)
	}
	fmt.Fprintln(stderr, "bgpgw:", err)
	if errors.As(err, &ce) {
		return ce.code
	}
	return exitError
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "bgpgw",
		Short:         "Highly available VPN gateway: IPsec tunnels with an embedded BGP speaker",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	var socket, cfgPath string
	socketFlag := func(c *cobra.Command) {
		c.Flags().StringVar(&socket, "socket", config.DefaultSocket, "API socket of the running daemon")
		c.Flags().StringVar(&cfgPath, "config", "", "read the API socket path from this configuration file")
	}
	client := func() (*api.Client, error) {
		if cfgPath != "" {
			s, err := configfile.SocketFromFile(cfgPath)
			if err != nil {
				return nil, codedError{exitConfig, fmt.Errorf("%s:\n%w", cfgPath, err)}
			}
			socket = s
		}
		return api.NewClient(socket), nil
	}

	run := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Run the daemon",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runDaemon(c.Context(), cfgPath, stderr, c)
		},
	}
	run.Flags().StringVar(&cfgPath, "config", "", "configuration file (required)")
	run.Flags().String("log-format", "text", "log format: text or json")
	run.Flags().String("log-level", "info", "log level: debug, info, warn or error")
	_ = run.MarkFlagRequired("config")

	validate := &cobra.Command{
		Use:   "validate --config FILE",
		Short: "Check a configuration file; exit 2 naming each bad key",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := configfile.Load(cfgPath)
			if err != nil {
				return codedError{exitConfig, fmt.Errorf("%s:\n%w", cfgPath, err)}
			}
			for _, w := range cfg.Warnings {
				fmt.Fprintf(stderr, "%s: warning: %s\n", cfgPath, w)
			}
			fmt.Fprintf(stdout, "%s: valid (instance %s, %s, %d tunnels, %d cloud peers)\n",
				cfgPath, cfg.Instance.Name, cfg.Instance.Mode, len(cfg.Tunnels), len(cfg.CloudPeers))
			return nil
		},
	}
	validate.Flags().StringVar(&cfgPath, "config", "", "configuration file (required)")
	_ = validate.MarkFlagRequired("config")

	var asJSON, rejected bool
	status := &cobra.Command{
		Use:   "status [--json | --rejected]",
		Short: "Show the running daemon's sessions, announcements and routes",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := client()
			if err != nil {
				return err
			}
			st, err := cl.Status(c.Context())
			if err != nil {
				return err
			}
			switch {
			case asJSON:
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			case rejected:
				printRejected(stdout, st)
			default:
				printStatus(stdout, st)
			}
			return nil
		},
	}
	socketFlag(status)
	status.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	status.Flags().BoolVar(&rejected, "rejected", false, "list the routes each peer sent that were refused, and why")
	status.MarkFlagsMutuallyExclusive("json", "rejected")

	action := func(use, short, done string, f func(*api.Client, context.Context) error) *cobra.Command {
		c := &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.NoArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				cl, err := client()
				if err != nil {
					return err
				}
				if err := f(cl, c.Context()); err != nil {
					return err
				}
				fmt.Fprintln(stdout, done)
				return nil
			},
		}
		socketFlag(c)
		return c
	}
	drain := action("drain", "Move traffic away from this instance before maintenance", "drained", (*api.Client).Drain)
	undrain := action("undrain", "Attract traffic again after maintenance", "undrained", (*api.Client).Undrain)
	reload := &cobra.Command{
		Use:   "reload",
		Short: "Reload the configuration file (as SIGHUP does) and print what changed; a bad file is rejected and the running configuration kept",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := client()
			if err != nil {
				return err
			}
			p, err := cl.Reload(c.Context())
			if err != nil {
				return err
			}
			printPlan(stdout, p)
			if len(p.Errors) > 0 {
				return fmt.Errorf("reloaded, but not all of it applied: %s", strings.Join(p.Errors, "; "))
			}
			fmt.Fprintln(stdout, "reloaded")
			return nil
		},
	}
	socketFlag(reload)
	role := &cobra.Command{
		Use:       "role primary|standby",
		Short:     "Change this instance's role in an active-standby pair (no session reset)",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"primary", "standby"},
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := client()
			if err != nil {
				return err
			}
			if err := cl.SetRole(c.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintln(stdout, "role", args[0])
			return nil
		},
	}
	socketFlag(role)

	ver := &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run:   func(*cobra.Command, []string) { fmt.Fprintln(stdout, "bgpgw", version) },
	}
	root.AddCommand(run, validate, newPlanCmd(stdout), status, drain, undrain, reload, role, ver)
	return root
}

func runDaemon(ctx context.Context, path string, stderr io.Writer, c *cobra.Command) error {
	format, _ := c.Flags().GetString("log-format")
	levelName, _ := c.Flags().GetString("log-level")
	var level slog.Level
	if err := level.UnmarshalText([]byte(levelName)); err != nil {
		return codedError{exitConfig, fmt.Errorf("--log-level %q: want debug, info, warn or error", levelName)}
	}
	hopts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(stderr, hopts)
	case "json":
		h = slog.NewJSONHandler(stderr, hopts)
	default:
		return codedError{exitConfig, fmt.Errorf("--log-format %q: want text or json", format)}
	}
	log := slog.New(h)

	cfg, err := configfile.Load(path)
	if err != nil {
		return codedError{exitConfig, fmt.Errorf("%s:\n%w", path, err)}
	}
	for _, w := range cfg.Warnings {
		log.Warn("configuration", "warning", w)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// The first signal starts a drain; a second one kills at once.
	go func() { <-ctx.Done(); stop() }()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case reload <- struct{}{}:
				default:
				}
			}
		}
	}()
	err = daemon.Run(ctx, cfg, daemon.Options{Logger: log, ConfigPath: path, Reload: reload})
	if errors.Is(err, daemon.ErrConfig) {
		return codedError{exitConfig, err}
	}
	return err
}

// printPair prints the partner's state and the takeovers, if any.
func printPair(w io.Writer, p *api.Pair) {
	if p == nil {
		return
	}
	state := "up"
	if !p.PartnerUp {
		state = "LOST: " + p.Why
	}
	fmt.Fprintf(w, "partner %s", p.Partner)
	if p.PartnerName != "" {
		fmt.Fprintf(w, " (%s)", p.PartnerName)
	}
	fmt.Fprintf(w, ": %s", state)
	if p.LastHeard != nil {
		fmt.Fprintf(w, "; says it carries [%s]", strings.Join(p.PartnerCarrying, " "))
		if p.PartnerDraining {
			fmt.Fprint(w, ", draining")
		}
		if !p.PartnerChecksOK {
			fmt.Fprint(w, ", instance checks failing")
		}
	}
	fmt.Fprintf(w, "; takeover %s, %d so far (%d false)\n", p.Takeover, p.TakeoversTotal, p.FalseTakeoversTotal)
	for _, t := range p.Takeovers {
		fmt.Fprintf(w, "takeover %s: %s, for %s", t.Device, t.Reason, time.Duration(t.DurationSeconds*float64(time.Second)).Round(time.Millisecond))
		if t.ReleaseAt != nil {
			fmt.Fprint(w, ", partner back: ending")
		}
		fmt.Fprintln(w)
	}
}

func printStatus(w io.Writer, st api.Status) {
	fmt.Fprintf(w, "instance %s  mode %s", st.Instance.Name, st.Instance.Mode)
	if st.Instance.Role != "" {
		fmt.Fprintf(w, "  role %s", st.Instance.Role)
	}
	if st.Drained {
		fmt.Fprintf(w, "  %s", strings.ToUpper(st.DrainState))
	}
	if !st.InstanceOK {
		fmt.Fprint(w, "  INSTANCE CHECK FAILING")
	}
	fmt.Fprintln(w)
	for _, t := range st.Tunnels {
		state := "carrying"
		if !t.Carrying {
			state = "withdrawn: " + t.Reason
		}
		fmt.Fprintf(w, "tunnel %s: %s\n", t.Name, state)
	}
	printPair(w, st.Pair)
	for _, c := range st.Checks {
		res := "no result yet"
		if c.OK != nil && *c.OK {
			res = "ok"
		} else if c.OK != nil {
			res = "FAILING: " + c.Detail
		}
		fmt.Fprintf(w, "check %s (%s): %s\n", c.Name, c.Scope, res)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tKIND\tADDRESS\tAS\tSTATE\tUPTIME\tSENT\tACCEPTED\tREJECTED\tLAST ERROR")
	for _, p := range st.Peers {
		up := "-"
		if p.EstablishedSince != nil {
			up = time.Duration(p.UptimeSeconds * float64(time.Second)).Truncate(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%d\t%d\t%s\n", p.Name, p.Kind, p.Address, p.PeerASN, p.State, up,
			len(p.Announced), len(p.Received), len(p.Rejected), p.LastError)
	}
	_ = tw.Flush()
	if len(st.Routes) > 0 {
		fmt.Fprintln(w, "kernel routes:")
		for _, r := range st.Routes {
			fmt.Fprintf(w, "  %s via %s\n", r.Prefix, strings.Join(r.NextHops, ", "))
		}
	}
	for _, e := range st.Errors {
		fmt.Fprintln(w, "error:", e)
	}
}
