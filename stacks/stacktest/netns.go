// Package stacktest holds test helpers for real-network tests of gotaps:
// network namespaces a test creates itself (so that traffic never leaves
// the machine's loopback or the test's own namespaces).
package stacktest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// Netns is a network namespace joined to the test's namespace by a veth
// pair: HostIP on the test's side (interface HostIf), NSIP inside (a /30).
type Netns struct {
	NS, HostIf, NSIf string
	HostIP, NSIP     netip.Addr
}

// IP runs the ip command (iproute2) and fails the test with its output.
func IP(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// SkipUnlessNetns skips the test with a clear message unless it can create
// network namespaces (Linux, root and the ip command).
func SkipUnlessNetns(t testing.TB) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("network namespaces are Linux only (GOOS=" + runtime.GOOS + ")")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace (ip netns add)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2) to create a network namespace")
	}
}

// NewNetns creates a namespace named after tag with a veth pair on the
// 198.18.<octet>.0/30 test network (RFC 2544 benchmarking space), removed
// when the test ends. It skips the test when namespaces cannot be made.
func NewNetns(t testing.TB, tag string, octet uint8) *Netns {
	t.Helper()
	SkipUnlessNetns(t)
	id := os.Getpid() % 100000
	n := &Netns{
		NS:     fmt.Sprintf("gotaps-%s-%d", tag, id),
		HostIf: fmt.Sprintf("gt%sh%d", tag, id),
		NSIf:   fmt.Sprintf("gt%sn%d", tag, id),
		HostIP: netip.AddrFrom4([4]byte{198, 18, octet, 1}),
		NSIP:   netip.AddrFrom4([4]byte{198, 18, octet, 2}),
	}
	removeStale(tag)
	IP(t, "netns", "add", n.NS)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", n.HostIf).Run()
		_ = exec.Command("ip", "netns", "del", n.NS).Run()
	})
	IP(t, "link", "add", n.HostIf, "type", "veth", "peer", "name", n.NSIf, "netns", n.NS)
	IP(t, "addr", "add", n.HostIP.String()+"/30", "dev", n.HostIf)
	IP(t, "link", "set", n.HostIf, "up")
	IP(t, "-n", n.NS, "addr", "add", n.NSIP.String()+"/30", "dev", n.NSIf)
	IP(t, "-n", n.NS, "link", "set", n.NSIf, "up")
	IP(t, "-n", n.NS, "link", "set", "lo", "up")
	return n
}

// removeStale deletes the namespaces (and their host-side veth) that an
// earlier test process of the same tag left behind when it was killed
// before its cleanup ran: their addresses would clash with the new
// namespace's. A namespace is stale when no process has the pid in its
// name.
func removeStale(tag string) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	prefix := "gotaps-" + tag + "-"
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		pid, ok := strings.CutPrefix(name, prefix)
		if !ok || pid == "" {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue // its process still runs
		}
		_ = exec.Command("ip", "link", "del", "gt"+tag+"h"+pid).Run()
		_ = exec.Command("ip", "netns", "del", name).Run()
	}
}

// Run runs f on an OS thread that joined the namespace: sockets f creates
// live there. The thread is thrown away afterwards.
func (n *Netns) Run(t testing.TB, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := JoinNetns(n.NS); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// LinkLocal gives the veth pair of n the IPv6 link-local addresses
// fe80::1 (the test's side) and fe80::2 (inside), without duplicate
// address detection, lifts the namespace's ICMPv6 rate limit (every error
// is sent), and returns the interfaces' indexes as zones ("%zone"):
// zones by index, since the net package's cache of interface names may
// still hold an earlier run's interface (-count) of the same name and
// another index.
func (n *Netns) LinkLocal(t testing.TB) (hostZone, nsZone string) {
	t.Helper()
	IP(t, "addr", "add", "fe80::1/64", "dev", n.HostIf, "nodad")
	IP(t, "-n", n.NS, "addr", "add", "fe80::2/64", "dev", n.NSIf, "nodad")
	IP(t, "netns", "exec", n.NS, "sysctl", "-q", "-w", "net.ipv6.icmp.ratelimit=0")
	hostIf, err := net.InterfaceByName(n.HostIf)
	if err != nil {
		t.Fatalf("netns: %v", err)
	}
	n.Run(t, func() error {
		ifi, err := net.InterfaceByName(n.NSIf)
		if err == nil {
			nsZone = strconv.Itoa(ifi.Index)
		}
		return err
	})
	return strconv.Itoa(hostIf.Index), nsZone
}
