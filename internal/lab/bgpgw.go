package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/bgpgw/bgpgw/pkg/api"
)

// BuildBgpgw compiles cmd/bgpgw into dir and returns the binary's path.
// It runs from any directory inside the module.
func BuildBgpgw(ctx context.Context, dir string) (string, error) {
	return buildGo(ctx, dir, "bgpgw", "github.com/bgpgw/bgpgw/cmd/bgpgw")
}

// buildGo compiles a main package of this module into dir/name.
func buildGo(ctx context.Context, dir, name, pkg string) (string, error) {
	bin := filepath.Join(dir, name)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", name, err, out)
	}
	return bin, nil
}

// Gateway is a bgpgw daemon running in a lab namespace.
type Gateway struct {
	Name    string
	NS      *Netns
	Bin     string
	Config  string // path of its configuration file
	Socket  string // path of its API socket
	LogFile string
	Proc    *Process
}

// SocketPath is where StartGateway expects the gateway called name to put
// its API socket: configurations should set api.socket to it.
func (l *Lab) SocketPath(name string) string { return filepath.Join(l.dir, name+".sock") }

// StartGateway writes configYAML and runs `bin run` with it in n, then
// waits until its API answers.
func (l *Lab) StartGateway(ctx context.Context, n *Netns, bin, name, configYAML string) (*Gateway, error) {
	g := &Gateway{Name: name, NS: n, Bin: bin,
		Config: filepath.Join(l.dir, name+".yaml"), Socket: l.SocketPath(name),
		LogFile: filepath.Join(l.dir, name+".log")}
	if err := os.WriteFile(g.Config, []byte(configYAML), 0o600); err != nil {
		return nil, fmt.Errorf("gateway %s: write config: %w", name, err)
	}
	p, err := l.Start(n, g.LogFile, bin, "run", "--config", g.Config)
	if err != nil {
		return nil, fmt.Errorf("gateway %s: %w", name, err)
	}
	g.Proc = p
	err = Poll(ctx, 50*time.Millisecond, func() (bool, error) {
		if p.Exited() {
			return false, Fatal(fmt.Errorf("bgpgw exited early; log:\n%s", g.LogTail(30)))
		}
		_, err := g.Status(ctx)
		return err == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("gateway %s: API did not answer: %w", name, err)
	}
	return g, nil
}

// CLI runs a bgpgw subcommand against the gateway's socket and returns stdout.
func (g *Gateway) CLI(ctx context.Context, args ...string) (string, error) {
	args = append(args, "--socket", g.Socket)
	return g.NS.Exec(ctx, append([]string{g.Bin}, args...)...)
}

// Status runs `bgpgw status --json` and decodes it.
func (g *Gateway) Status(ctx context.Context) (api.Status, error) {
	var st api.Status
	out, err := g.CLI(ctx, "status", "--json")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("decode status of %s: %w\n%s", g.Name, err, out)
	}
	return st, nil
}

// Peer returns the status of one peer, or false.
func (g *Gateway) Peer(ctx context.Context, name string) (api.Peer, bool, error) {
	st, err := g.Status(ctx)
	if err != nil {
		return api.Peer{}, false, err
	}
	for _, p := range st.Peers {
		if p.Name == name {
			return p, true, nil
		}
	}
	return api.Peer{}, false, nil
}

// LogTail returns the last n lines of the gateway's log.
func (g *Gateway) LogTail(n int) string { return tailFile(g.LogFile, n) }
