package actors

import (
	"net/netip"
	"testing"

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
