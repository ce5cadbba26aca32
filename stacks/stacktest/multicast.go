package stacktest

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// MulticastNetns is a network namespace for multicast tests, with no link
// to any other namespace: multicast sent there never leaves it. It holds a
// veth pair with both ends inside, If (the end the IPv4 and IPv6 groups
// are routed to, with two addresses of each family, Src4 and Src6) and
// Peer (up, no address, no multicast route). A datagram a socket sends to
// a group out of If reaches the members of the group on If through the
// kernel's multicast loopback (IP_MULTICAST_LOOP, on by default); what
// goes out on the wire reaches Peer, where nothing is joined, and is
// dropped. (The loopback interface cannot carry this: Linux makes an IPv6
// route through it a reject route.)
type MulticastNetns struct {
	Netns
	If, Peer   string
	Src4, Src6 [2]netip.Addr
}

// NewMulticastNetns creates the namespace (named after tag), removed when
// the test ends. It skips the test when namespaces cannot be made.
func NewMulticastNetns(t testing.TB, tag string) *MulticastNetns {
	t.Helper()
	SkipUnlessNetns(t)
	n := MulticastLayout()
	n.NS = fmt.Sprintf("gotaps-%s-%d", tag, os.Getpid()%100000)
	removeStale(tag)
	IP(t, "netns", "add", n.NS)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.NS).Run() })
	in := func(args ...string) { t.Helper(); IP(t, append([]string{"-n", n.NS}, args...)...) }
	in("link", "set", "lo", "up")
	in("link", "add", n.If, "type", "veth", "peer", "name", n.Peer)
	for _, a := range n.Src4 {
		in("addr", "add", a.String()+"/24", "dev", n.If)
	}
	for _, a := range n.Src6 {
		in("addr", "add", a.String()+"/64", "dev", n.If, "nodad")
	}
	in("link", "set", n.If, "up")
	in("link", "set", n.Peer, "up")
	in("route", "add", "224.0.0.0/4", "dev", n.If)
	// only If routes IPv6 groups: the kernel gave Peer a route too
	in("-6", "route", "del", "multicast", "ff00::/8", "dev", n.Peer, "table", "local")
	return n
}

// MulticastLayout describes what NewMulticastNetns makes (NS empty): for
// a test process that runs inside such a namespace already.
func MulticastLayout() *MulticastNetns {
	return &MulticastNetns{If: "mc0", Peer: "mc1",
		Src4: [2]netip.Addr{netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("10.77.0.2")},
		Src6: [2]netip.Addr{netip.MustParseAddr("fd77::1"), netip.MustParseAddr("fd77::2")}}
}

// MulticastGroups returns the multicast groups joined on the interface
// ifname, as the namespace of the calling thread lists them in
// /proc/net/igmp (IPv4, "239.1.2.3") or /proc/net/igmp6 (IPv6,
// "ff15::1234"). Call it from the namespace (Run, or a process started in
// it).
func MulticastGroups(ifname string, v6 bool) ([]string, error) {
	if v6 {
		b, err := os.ReadFile("/proc/thread-self/net/igmp6")
		if err != nil {
			return nil, err
		}
		var out []string
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line) // index name group users flags timer
			if len(f) < 3 || f[1] != ifname || len(f[2]) != 32 {
				continue
			}
			var a [16]byte
			for i := range a {
				fmt.Sscanf(f[2][2*i:2*i+2], "%02x", &a[i])
			}
			out = append(out, netip.AddrFrom16(a).String())
		}
		return out, nil
	}
	b, err := os.ReadFile("/proc/thread-self/net/igmp")
	if err != nil {
		return nil, err
	}
	var out []string
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && !strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, " "):
			in = f[1] == ifname // "2	mc0       :     2      V3"
		case in && len(f) >= 1 && len(f[0]) == 8:
			var v uint32
			fmt.Sscanf(f[0], "%08X", &v) // the group in host byte order (little-endian)
			out = append(out, netip.AddrFrom4([4]byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)}).String())
		}
	}
	return out, nil
}

// Joined reports whether group is joined on ifname (MulticastGroups).
func Joined(ifname string, group netip.Addr) (bool, error) {
	gs, err := MulticastGroups(ifname, group.Is6())
	return slices.Contains(gs, group.String()), err
}
