package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// CharonBin is strongSwan's IKE daemon.
const CharonBin = "/usr/lib/ipsec/charon"

// CharonStartTimeout bounds how long StartCharon waits for VICI to answer.
const CharonStartTimeout = 15 * time.Second

// Charon is a strongSwan charon running in a namespace, with the
// kernel-libipsec plugin (userspace ESP over its TUN device ipsec0) or with
// the kernel's ESP (StartCharonKernel), in its own mount namespace with a
// private /run (charon keeps its pid file there).
type Charon struct {
	lab  *Lab
	ns   *Netns
	name string
	dir  string
	// Vici is the path of its VICI socket.
	Vici string
	proc *Process
	// userspaceESP: kernel-libipsec, run at real-time priority.
	userspaceESP bool
}

// The plugins of a lab charon ("load =" lines, which scripts/install-deps.sh
// reads to verify that every plugin is installed): userspace ESP through
// kernel-libipsec, or the kernel's ESP (xfrm) through kernel-netlink alone.
const (
	libipsecPlugins = `
  load = random nonce openssl pem pkcs1 x509 pubkey kdf curve25519 aes sha1 sha2 hmac gcm kernel-libipsec kernel-netlink socket-default updown vici
`
	kernelPlugins = `
  load = random nonce openssl pem pkcs1 x509 pubkey kdf curve25519 aes sha1 sha2 hmac gcm kernel-netlink socket-default updown vici
`
)

// charonConf is the strongswan.conf of a lab charon: its plugins (%[2]s),
// its settings (%[3]s: routes, which the lab's tests and bgpgw program, and
// IKE retransmissions, short so that a dead peer is given up in seconds),
// and a file log. Swanctl reads it too, for its own plugins: by default
// swanctl loads every plugin built, af-alg among them, which probes dozens
// of kernel ciphers; where the kernel has modules (the QEMU guest), each
// probe runs modprobe, and the first swanctl call took 35 s.
const charonConf = `charon {%[2]s%[3]s
  filelog {
    log {
      path = %[1]s/charon.log
      time_format = %%T
      default = 1
      ike = 1
      cfg = 1
    }
  }
  plugins {
    vici {
      socket = unix://%[1]s/charon.vici
    }
  }
}
swanctl {
  load = pem pkcs1 x509 pubkey random nonce
}
`

// StartCharon writes a strongswan.conf for charon called name, with
// kernel-libipsec, and starts it in n. It returns once its VICI socket
// answers.
func (l *Lab) StartCharon(n *Netns, name string) (*Charon, error) {
	return l.startCharon(n, name, libipsecPlugins, `  install_routes = no
  retransmit_timeout = 1
  retransmit_tries = 2
  retransmit_base = 1.4`, true)
}

// StartCharonKernel starts a charon called name in n with the kernel's ESP
// (kernel-netlink, no kernel-libipsec), as on a production gateway: it needs
// a kernel with ESP and XFRM interfaces (the QEMU guest of internal/guest;
// this VM's kernel has neither). With defaultRoutes, charon.install_routes
// keeps its default (yes), as Debian's charon has it; otherwise it is no.
// Its IKE retransmissions give a peer 3 s, then 4.2, 5.9 and 8.2 s (gives
// up after 21 s): in the guest, under TCG and while the lab starts, an
// IKE_SA took more than 9 s to come up, and an initiator that gave up
// while the responder completed the IKE_SA left the responder with two
// IKE_SAs for one tunnel, sending into the dead one's CHILD_SA (seen with
// strongSwan 5.9.8 on both ends).
func (l *Lab) StartCharonKernel(n *Netns, name string, defaultRoutes bool) (*Charon, error) {
	routes := "  install_routes = no"
	if defaultRoutes {
		routes = "  # install_routes: charon's default"
	}
	return l.startCharon(n, name, kernelPlugins, routes+`
  retransmit_timeout = 3
  retransmit_tries = 3
  retransmit_base = 1.4`, false)
}

func (l *Lab) startCharon(n *Netns, name, plugins, settings string, userspaceESP bool) (*Charon, error) {
	if err := l.reserve("charon", name); err != nil {
		return nil, err
	}
	if _, err := os.Stat(CharonBin); err != nil {
		return nil, fmt.Errorf("charon %s: %w (make deps, or scripts/install-deps.sh, installs it)", name, err)
	}
	if _, err := exec.LookPath("swanctl"); err != nil {
		return nil, fmt.Errorf("charon %s: swanctl: %w (apt-get install -y strongswan-swanctl)", name, err)
	}
	c := &Charon{lab: l, ns: n, name: name, dir: filepath.Join(l.dir, "charon-"+name), userspaceESP: userspaceESP}
	c.Vici = filepath.Join(c.dir, "charon.vici")
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, fmt.Errorf("charon %s: %w", name, err)
	}
	if err := os.WriteFile(c.conf(), fmt.Appendf(nil, charonConf, c.dir, plugins, settings), 0o644); err != nil {
		return nil, fmt.Errorf("charon %s: %w", name, err)
	}
	if err := c.Start(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Charon) conf() string { return filepath.Join(c.dir, "strongswan.conf") }

// Dir is where its configuration, log and socket are.
func (c *Charon) Dir() string { return c.dir }

// Start (re)starts charon after Kill.
func (c *Charon) Start() error {
	_ = os.Remove(c.Vici)
	script := `mount -t tmpfs none /run && STRONGSWAN_CONF="$1" exec "$2"`
	argv := []string{"unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", c.conf(), CharonBin}
	if c.userspaceESP {
		// At real-time priority, as in the containerlab nodes (lib.sh
		// start_charon): its userspace ESP stands in for the kernel's, which
		// no process delays; at normal priority a busy machine makes it
		// drop. With the kernel's ESP, charon does IKE only: its key
		// exchanges at real-time priority would only delay BFD.
		if out, err := exec.Command("chrt", "-r", "1", "true").CombinedOutput(); err != nil {
			return fmt.Errorf("charon %s: real-time priority refused (chrt -r 1: %v: %s): the lab's userspace ESP needs it",
				c.name, err, strings.TrimSpace(string(out)))
		}
		argv = append([]string{"chrt", "-r", "1"}, argv...)
	}
	p, err := c.lab.Start(c.ns, filepath.Join(c.dir, "charon.out"), argv[0], argv[1:]...)
	if err != nil {
		return fmt.Errorf("charon %s: %w", c.name, err)
	}
	c.proc = p
	ctx, cancel := context.WithTimeout(context.Background(), CharonStartTimeout)
	defer cancel()
	err = Poll(ctx, 50*time.Millisecond, func() (bool, error) {
		if p.Exited() {
			return false, Fatal(fmt.Errorf("charon exited:\n%s", c.LogTail(20)))
		}
		if _, err := os.Stat(c.Vici); err != nil {
			return false, nil
		}
		_, err := c.Swanctl(ctx, "--stats")
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("charon %s: VICI did not answer: %w\n%s", c.name, err, c.LogTail(20))
	}
	c.lab.logf("lab: charon %s running in %s (pid %d, vici %s)", c.name, c.ns.name, p.Pid(), c.Vici)
	return nil
}

// Kill kills charon with SIGKILL and waits for it to be gone.
func (c *Charon) Kill() error {
	if err := syscall.Kill(c.proc.Pid(), syscall.SIGKILL); err != nil {
		return fmt.Errorf("charon %s: kill: %w", c.name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	_ = c.proc.Wait(ctx) // "signal: killed" is the expected exit status
	if !c.proc.Exited() {
		return fmt.Errorf("charon %s: still running after SIGKILL", c.name)
	}
	return nil
}

// Pid is charon's process id.
func (c *Charon) Pid() int { return c.proc.Pid() }

// Swanctl runs `swanctl COMMAND --uri SOCKET args...` against this
// charon (swanctl takes --uri after the command), with the charon's
// strongswan.conf (its swanctl section).
func (c *Charon) Swanctl(ctx context.Context, command string, args ...string) (string, error) {
	return run(ctx, "charon "+c.name, "env", append([]string{"STRONGSWAN_CONF=" + c.conf(), "swanctl", command,
		"--uri", "unix://" + c.Vici}, args...)...)
}

// Load writes swanctl.conf text to the charon's directory and loads it
// (connections and secrets) with `swanctl --load-all`.
func (c *Charon) Load(ctx context.Context, swanctlConf string) error {
	path := filepath.Join(c.dir, "swanctl.conf")
	if err := os.WriteFile(path, []byte(swanctlConf), 0o600); err != nil {
		return fmt.Errorf("charon %s: %w", c.name, err)
	}
	out, err := c.Swanctl(ctx, "--load-all", "--noprompt", "--file", path)
	if err != nil {
		return err
	}
	// Missing credential directories next to the file are reported as
	// "opening directory ... failed" and are harmless.
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "failed") && !strings.HasPrefix(line, "opening directory") {
			return fmt.Errorf("charon %s: swanctl --load-all: %s", c.name, out)
		}
	}
	return nil
}

// LogTail returns the last n lines of charon's log.
func (c *Charon) LogTail(n int) string {
	return tailFile(filepath.Join(c.dir, "charon.log"), n) + tailFile(filepath.Join(c.dir, "charon.out"), n)
}

// SwanctlPSK is a swanctl.conf with one route-based IKEv2 connection called
// name (traffic selectors 0.0.0.0/0 both ways, PSK, identities the
// addresses), as an on-prem device would load it; startAction is charon's
// start_action ("none": responder only, "start": initiate at load).
func SwanctlPSK(name, local, remote, psk, startAction string) string {
	return fmt.Sprintf(`connections {
  %[1]s {
    version = 2
    local_addrs = %[2]s
    remote_addrs = %[3]s
    proposals = aes256gcm16-prfsha384-ecp384
    dpd_delay = 10s
    local { auth = psk
            id = %[2]s }
    remote { auth = psk
             id = %[3]s }
    children {
      %[1]s {
        local_ts = 0.0.0.0/0
        remote_ts = 0.0.0.0/0
        esp_proposals = aes256gcm16-ecp384
        start_action = %[5]s
      }
    }
  }
}
secrets {
  ike-%[1]s { id = %[3]s
           secret = "%[4]s" }
}
`, name, local, remote, psk, startAction)
}
