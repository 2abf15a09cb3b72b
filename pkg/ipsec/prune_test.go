package ipsec

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/bgpgw/bgpgw/pkg/config"
)

// The fake's XFRM states: what charon installed, keyed as the kernel keys
// them for a delete (destination, protocol, SPI).

func (f *fakeNetlink) XfrmStateList(family int) ([]netlink.XfrmState, error) {
	f.calls = append(f.calls, "XfrmStateList")
	if family != netlink.FAMILY_ALL {
		f.t.Errorf("impossible: XfrmStateList of family %d", family)
	}
	if err := f.fail["XfrmStateList"]; err != nil {
		return nil, err
	}
	return slices.Clone(f.states), nil
}

func (f *fakeNetlink) XfrmStateDel(s *netlink.XfrmState) error {
	f.calls = append(f.calls, fmt.Sprintf("XfrmStateDel spi 0x%08x", uint32(s.Spi)))
	if s.Dst == nil || s.Proto == 0 {
		f.t.Errorf("impossible: XfrmStateDel without destination or protocol: %v", s)
	}
	if err := f.fail["XfrmStateDel"]; err != nil {
		return err
	}
	for i, x := range f.states {
		if x.Spi == s.Spi && x.Proto == s.Proto && x.Dst.Equal(s.Dst) {
			f.states = slices.Delete(f.states, i, i+1)
			return nil
		}
	}
	return syscall.ESRCH
}

// addState adds an ESP state of if_id ifID added age ago, as charon would.
func (f *fakeNetlink) addState(spi uint32, ifID int, age time.Duration) {
	f.states = append(f.states, netlink.XfrmState{
		Src: net.ParseIP("203.0.113.1"), Dst: net.ParseIP("198.51.100.10"), Proto: netlink.XFRM_PROTO_ESP,
		Mode: netlink.XFRM_MODE_TUNNEL, Spi: int(spi), Ifid: ifID,
		Statistics: netlink.XfrmStateStats{AddTime: uint64(time.Now().Add(-age).Unix())}})
}

func (f *fakeNetlink) stateSPIs() []string {
	var out []string
	for _, s := range f.states {
		out = append(out, fmt.Sprintf("0x%08x", uint32(s.Spi)))
	}
	slices.Sort(out)
	return out
}

// TestPruneStates: the ESP states of bgpgw's if_ids that charon does not
// know are deleted; charon's own, other if_ids' (another IPsec user's, if_id
// 0 included), and states younger than pruneMinAge are left. Regression:
// after charon was killed and restarted under a running bgpgw, the killed
// charon's SAs stayed in the kernel beside the new ones (QEMU guest,
// test/xfrm, "charon killed").
func TestPruneStates(t *testing.T) {
	p, f, logs := newTestDataPlane(t, config.IPsecXFRM)
	f.addState(0xc1000001, 1, time.Minute) // charon's, tunnel 1
	f.addState(0xc1000002, 1, time.Minute) // charon's
	f.addState(0xcdead001, 1, time.Hour)   // the killed charon's, tunnel 1
	f.addState(0xcdead002, 2, time.Hour)   // the killed charon's, tunnel 2
	f.addState(0xc0000003, 1, time.Second) // just added: not yet judged
	f.addState(0xc0000004, 7, time.Hour)   // another if_id: not bgpgw's
	f.addState(0xc0000005, 0, time.Hour)   // no if_id: policy-based IPsec of someone else
	n, err := p.PruneStates([]uint32{1, 2}, []string{"c1000001", "c1000002"})
	if err != nil || n != 2 {
		t.Fatalf("PruneStates = %d, %v; want 2 deleted", n, err)
	}
	dpEqual(t, "deleted", f.changes(), []string{"XfrmStateDel spi 0xcdead001", "XfrmStateDel spi 0xcdead002"})
	dpEqual(t, "left", f.stateSPIs(), []string{"0xc0000003", "0xc0000004", "0xc0000005", "0xc1000001", "0xc1000002"})
	if want := "deleted a stale ESP state"; strings.Count(logs.String(), want) != 2 {
		t.Errorf("log does not say %q twice:\n%s", want, logs)
	}

	// Nothing to do: only reads.
	if n, err := p.PruneStates([]uint32{1, 2}, []string{"c1000001", "c1000002"}); n != 0 || err != nil {
		t.Errorf("PruneStates again = %d, %v", n, err)
	}
	dpEqual(t, "again", f.changes(), nil)

	// Errors: a listing that fails deletes nothing; a delete that fails is
	// reported and the others go on; a state gone meanwhile is no error.
	f.fail["XfrmStateList"] = syscall.EINTR
	if _, err := p.PruneStates([]uint32{1}, nil); err == nil {
		t.Errorf("PruneStates with a failing list: no error")
	}
	delete(f.fail, "XfrmStateList")
	f.fail["XfrmStateDel"] = syscall.EPERM
	n, err = p.PruneStates([]uint32{1}, []string{"c1000002"})
	dpWantErr(t, err, "0xc1000001", "operation not permitted")
	if n != 0 {
		t.Errorf("deleted %d with a failing delete", n)
	}
	f.fail["XfrmStateDel"] = syscall.ESRCH
	if n, err := p.PruneStates([]uint32{1}, []string{"c1000002"}); err != nil || n != 1 {
		t.Errorf("PruneStates of a state gone meanwhile = %d, %v; want 1, nil", n, err)
	}
	if _, err := p.PruneStates([]uint32{1}, []string{"not hex"}); err == nil {
		t.Errorf("PruneStates with a bad SPI from charon: no error")
	}
}

// TestPruneStatesLibipsec: libipsec's SAs are charon's, in userspace: there
// is nothing to prune in the kernel.
func TestPruneStatesLibipsec(t *testing.T) {
	p, f, _ := newTestDataPlane(t, config.IPsecLibipsec)
	f.addState(0xcdead001, 1, time.Hour)
	if n, err := p.PruneStates([]uint32{1}, nil); n != 0 || err != nil {
		t.Errorf("PruneStates in libipsec mode = %d, %v", n, err)
	}
	dpEqual(t, "calls", f.calls, nil)
}
