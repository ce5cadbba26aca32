package actors

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

func TestFollowedSite(t *testing.T) {
	lo4 := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	locals := []localAddrs{{}, {addrs: lo4}, {iface: "eth0"}, {path: "/tmp/x"}}
	tests := []struct {
		name    string
		dynamic bool
		site    listenSite
		want    bool
	}{
		{"the wildcard bound by the property", true, listenSite{endpoint: 0, iface: "eth1"}, true},
		{"an address bound by the property", true, listenSite{endpoint: 1, local: netip.AddrPortFrom(lo4[0], 0), iface: "lo"}, true},
		{"Required interfaces never change", false, listenSite{endpoint: 0, iface: "eth1"}, false},
		{"not bound", true, listenSite{endpoint: 0}, false},
		{"the endpoint's own interface", true, listenSite{endpoint: 2, iface: "eth0"}, false},
		{"a Unix path", true, listenSite{endpoint: 3, path: "/tmp/x"}, false},
		{"an endpoint out of range", true, listenSite{endpoint: 4, iface: "eth1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, followedSite(locals, tt.dynamic, tt.site))
		})
	}
}

func TestDiffListen(t *testing.T) {
	site := func(ep int, addr, iface string) listenSite {
		s := listenSite{endpoint: ep, iface: iface}
		if addr != "" {
			s.local = netip.MustParseAddrPort(addr)
		}
		return s
	}
	eth0, eth1, eth2 := site(0, "", "eth0"), site(0, "", "eth1"), site(0, "", "eth2")
	fixed := site(1, "127.0.0.1:80", "lo") // an endpoint's own interface: not followed
	unbound := site(2, "192.0.2.1:0", "")
	followed := func(s listenSite) bool { return s.endpoint == 0 }
	tests := []struct {
		name      string
		cur, next []listenSite
		add, gone []listenSite
	}{
		{name: "nothing changed", cur: []listenSite{eth0, eth1}, next: []listenSite{eth0, eth1}},
		{name: "an interface came up", cur: []listenSite{eth0}, next: []listenSite{eth0, eth1},
			add: []listenSite{eth1}},
		{name: "an interface went down", cur: []listenSite{eth0, eth1}, next: []listenSite{eth1},
			gone: []listenSite{eth0}},
		{name: "one down, another up", cur: []listenSite{eth0, eth1}, next: []listenSite{eth1, eth2},
			add: []listenSite{eth2}, gone: []listenSite{eth0}},
		{name: "one socket per transport: each site once", cur: []listenSite{eth0, eth0, eth1, eth1},
			next: []listenSite{eth1, eth2, eth2}, add: []listenSite{eth2}, gone: []listenSite{eth0}},
		{name: "every interface down (no plan)", cur: []listenSite{eth0, fixed, eth1}, next: nil,
			gone: []listenSite{eth0, eth1}},
		{name: "sites not followed are kept", cur: []listenSite{fixed, unbound, eth0}, next: []listenSite{eth0}},
		{name: "sites not followed are never added", cur: []listenSite{eth0}, next: []listenSite{fixed, unbound, eth0}},
		{name: "the order of the plan", cur: nil, next: []listenSite{eth2, eth0, eth1},
			add: []listenSite{eth2, eth0, eth1}},
		{name: "the same interface on another port is another site",
			cur: []listenSite{site(0, "[::]:0", "eth0")}, next: []listenSite{site(0, "[::]:8080", "eth0")},
			add: []listenSite{site(0, "[::]:8080", "eth0")}, gone: []listenSite{site(0, "[::]:0", "eth0")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			add, gone := diffListen(tt.cur, tt.next, followed)
			require.Equal(t, tt.add, add, "add")
			require.Equal(t, tt.gone, gone, "gone")
		})
	}
}

// TestListenFollowsProhibit: planListen, followedSite and diffListen
// together, as the listener uses them at Listen and after a burst of
// interface changes. A Prohibit holds for the listener's whole life: when
// the Prohibited interface is down (or missing) at Listen, the sites are
// bound to the allowed interfaces and followed, so that the Prohibited
// one coming up is never listened on and an allowed one coming up is.
func TestListenFollowsProhibit(t *testing.T) {
	lo4 := localAddrs{addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}
	v6 := localAddrs{addrs: []netip.Addr{netip.MustParseAddr("2001:db8::1")}, port: 443}
	host := func(up ...string) []stacks.NetInterface {
		ifs := []stacks.NetInterface{{Name: "lo", Index: 1, Kind: stacks.KindLoopback},
			{Name: "veth1", Index: 2, Kind: stacks.KindEthernet}, {Name: "veth2", Index: 3, Kind: stacks.KindEthernet}}
		for i := range ifs {
			ifs[i].Up = slices.Contains(up, ifs[i].Name)
		}
		return ifs
	}
	str := func(sites []listenSite) []string {
		var out []string
		for _, s := range sites {
			out = append(out, s.String())
		}
		return out
	}
	tests := []struct {
		name          string
		iface         map[string]int8
		locals        []localAddrs
		atListen, now []stacks.NetInterface
		sites         []string // at Listen
		listenErr     bool     // Listen fails: nothing to listen on
		add, gone     []string // after the change
	}{
		{name: "the Prohibited interface down at Listen comes up: not listened on; an allowed one is",
			iface: map[string]int8{"veth1": stacks.Prohibit}, locals: []localAddrs{lo4},
			atListen: host("lo"), now: host("lo", "veth1", "veth2"),
			sites: []string{"127.0.0.1:0%lo"}, add: []string{"127.0.0.1:0%veth2"}},
		{name: "the wildcard (dual-stack) likewise",
			iface: map[string]int8{"veth1": stacks.Prohibit}, locals: []localAddrs{{}},
			atListen: host("lo"), now: host("lo", "veth1", "veth2"),
			sites: []string{"invalid AddrPort%lo"}, add: []string{"invalid AddrPort%veth2"}},
		{name: "an IPv6 address likewise",
			iface: map[string]int8{"veth1": stacks.Prohibit}, locals: []localAddrs{v6},
			atListen: host("lo", "veth2"), now: host("veth1"),
			sites: []string{"[2001:db8::1]:443%lo", "[2001:db8::1]:443%veth2"},
			gone:  []string{"[2001:db8::1]:443%lo", "[2001:db8::1]:443%veth2"}},
		{name: "Prohibited by type, its interface down at Listen",
			iface: map[string]int8{"ethernet": stacks.Prohibit}, locals: []localAddrs{lo4},
			atListen: host("lo"), now: host("lo", "veth1", "veth2"),
			sites: []string{"127.0.0.1:0%lo"}},
		{name: "nothing allowed is up at Listen: Listen fails rather than listen unbound",
			iface: map[string]int8{"veth1": stacks.Prohibit}, locals: []localAddrs{lo4},
			atListen: host(), listenErr: true},
		{name: "a Prohibit naming no interface of the host still follows",
			iface: map[string]int8{"veth9": stacks.Prohibit}, locals: []localAddrs{lo4},
			atListen: host("lo", "veth1"), now: host("lo", "veth2"),
			sites: []string{"127.0.0.1:0%lo", "127.0.0.1:0%veth1"},
			add:   []string{"127.0.0.1:0%veth2"}, gone: []string{"127.0.0.1:0%veth1"}},
		{name: "no interface preference: one unbound socket, not followed",
			locals: []localAddrs{lo4}, atListen: host("lo"), now: host("lo", "veth1", "veth2"),
			sites: []string{"127.0.0.1:0"}},
		{name: "Prefer only: one unbound socket, not followed",
			iface: map[string]int8{"veth1": stacks.Prefer}, locals: []localAddrs{lo4},
			atListen: host("lo"), now: host("lo", "veth1", "veth2"),
			sites: []string{"127.0.0.1:0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefs := stacks.PathPrefs{Interface: tt.iface}
			plan, err := stacks.PlanPaths(prefs, tt.atListen)
			require.NoError(t, err)
			sites, err := planListen(tt.locals, plan, func(netip.Addr) bool { return false })
			if tt.listenErr {
				var pe *stacks.PathError
				require.ErrorAs(t, err, &pe)
				require.Equal(t, "interface", pe.Property)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.sites, str(sites), "at Listen")
			dynamic := len(plan.Required) == 0
			plan, err = stacks.PlanPaths(prefs, tt.now)
			require.NoError(t, err)
			next, err := planListen(tt.locals, plan, func(netip.Addr) bool { return false })
			var pe *stacks.PathError
			if errors.As(err, &pe) {
				next = nil // as the listener does: nothing left
			} else {
				require.NoError(t, err)
			}
			add, gone := diffListen(sites, next, func(s listenSite) bool { return followedSite(tt.locals, dynamic, s) })
			require.Equal(t, tt.add, str(add), "added")
			require.Equal(t, tt.gone, str(gone), "gone")
		})
	}
}
