package actors

import (
	"net/netip"
	"testing"

	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

func TestRendezvousPairs(t *testing.T) {
	a := netip.MustParseAddr
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		name    string
		locals  []localAddrs
		remotes []netip.AddrPort
		cands   []string // the local candidates kept, in order
		pairs   []string // local->remote, in priority order
		all     []string // every remote address
	}{
		{
			name:    "one local, one remote",
			locals:  []localAddrs{{addrs: []netip.Addr{a("127.0.0.1")}, port: 5}},
			remotes: []netip.AddrPort{ap("127.0.0.1:6")},
			cands:   []string{"127.0.0.1:5"},
			pairs:   []string{"127.0.0.1:5->127.0.0.1:6"},
			all:     []string{"127.0.0.1:6"},
		},
		{
			name: "locals x remotes, by the locals' order then the remotes'",
			locals: []localAddrs{{addrs: []netip.Addr{a("127.0.0.2")}, port: 5},
				{addrs: []netip.Addr{a("127.0.0.1")}, port: 5}},
			remotes: []netip.AddrPort{ap("127.0.0.3:6"), ap("127.0.0.4:6")},
			cands:   []string{"127.0.0.2:5", "127.0.0.1:5"},
			pairs: []string{"127.0.0.2:5->127.0.0.3:6", "127.0.0.2:5->127.0.0.4:6",
				"127.0.0.1:5->127.0.0.3:6", "127.0.0.1:5->127.0.0.4:6"},
			all: []string{"127.0.0.3:6", "127.0.0.4:6"},
		},
		{
			name: "a local of a family no remote has is left out",
			locals: []localAddrs{{addrs: []netip.Addr{a("::1")}, port: 5},
				{addrs: []netip.Addr{a("127.0.0.1")}, port: 5}},
			remotes: []netip.AddrPort{ap("127.0.0.1:6")},
			cands:   []string{"127.0.0.1:5"},
			pairs:   []string{"127.0.0.1:5->127.0.0.1:6"},
			all:     []string{"127.0.0.1:6"},
		},
		{
			name:    "families matched pair by pair; mapped addresses are IPv4",
			locals:  []localAddrs{{addrs: []netip.Addr{a("::1"), a("::ffff:127.0.0.1")}, port: 5}},
			remotes: []netip.AddrPort{ap("[::ffff:127.0.0.9]:6"), ap("[::1]:6")},
			cands:   []string{"[::1]:5", "127.0.0.1:5"},
			pairs:   []string{"[::1]:5->[::1]:6", "127.0.0.1:5->127.0.0.9:6"},
			all:     []string{"127.0.0.9:6", "[::1]:6"},
		},
		{
			name:    "the wildcard pairs with every family",
			locals:  []localAddrs{{port: 7}},
			remotes: []netip.AddrPort{ap("127.0.0.1:6"), ap("[::1]:6")},
			cands:   []string{":7"},
			pairs:   []string{":7->127.0.0.1:6", ":7->[::1]:6"},
			all:     []string{"127.0.0.1:6", "[::1]:6"},
		},
		{
			name: "duplicates dropped: locals and remotes",
			locals: []localAddrs{{addrs: []netip.Addr{a("127.0.0.1"), a("127.0.0.1")}, port: 5},
				{addrs: []netip.Addr{a("127.0.0.1")}, port: 5}},
			remotes: []netip.AddrPort{ap("127.0.0.1:6"), ap("[::ffff:127.0.0.1]:6")},
			cands:   []string{"127.0.0.1:5"},
			pairs:   []string{"127.0.0.1:5->127.0.0.1:6"},
			all:     []string{"127.0.0.1:6"},
		},
		{
			name: "an interface makes another candidate; Unix paths have no pairs",
			locals: []localAddrs{{addrs: []netip.Addr{a("127.0.0.1")}, port: 5},
				{addrs: []netip.Addr{a("127.0.0.1")}, port: 5, iface: "lo"}, {path: "/tmp/x"}},
			remotes: []netip.AddrPort{{}, ap("127.0.0.1:6")},
			cands:   []string{"127.0.0.1:5", "127.0.0.1:5%lo"},
			pairs:   []string{"127.0.0.1:5->127.0.0.1:6", "127.0.0.1:5->127.0.0.1:6"},
			all:     []string{"127.0.0.1:6"},
		},
		{
			name:    "no pair at all",
			locals:  []localAddrs{{addrs: []netip.Addr{a("::1")}, port: 5}},
			remotes: []netip.AddrPort{ap("127.0.0.1:6")},
			all:     []string{"127.0.0.1:6"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cands, pairs, all := rendezvousPairs(tc.locals, tc.remotes)
			var gotC, gotP, gotA []string
			for _, c := range cands {
				s := rvAddrString(c.Addr)
				if c.Iface != "" {
					s += "%" + c.Iface
				}
				gotC = append(gotC, s)
			}
			for _, p := range pairs {
				gotP = append(gotP, rvPairKey{Local: cands[p.Local].Addr, Remote: p.Remote}.String())
			}
			for _, r := range all {
				gotA = append(gotA, r.String())
			}
			require.Equal(t, tc.cands, gotC, "candidates")
			require.Equal(t, tc.pairs, gotP, "pairs")
			require.Equal(t, tc.all, gotA, "remotes")
		})
	}
}

// TestRendezvousICEAttrs: the ICE attributes survive the stacks decoders
// (which ignore them), and a message without them has none.
func TestRendezvousICEAttrs(t *testing.T) {
	tx := stacks.NewSTUNTransactionID()
	for _, nominate := range []bool{false, true} {
		b := encodeCheck(tx, 0x0102030405060708, nominate)
		require.True(t, stacks.IsSTUN(b))
		got, err := stacks.DecodeSTUNBindingRequest(b)
		require.NoError(t, err, "FINGERPRINT recomputed")
		require.Equal(t, tx, got)
		tie, ok, nom := iceAttrs(b)
		require.True(t, ok)
		require.Equal(t, uint64(0x0102030405060708), tie)
		require.Equal(t, nominate, nom)
	}
	mapped := netip.MustParseAddrPort("127.0.0.1:9")
	b := encodeCheckAnswer(tx, mapped, 42)
	m, err := stacks.DecodeSTUNBindingResponse(b, tx, nil)
	require.NoError(t, err)
	require.Equal(t, mapped, m)
	tie, ok, nom := iceAttrs(b)
	require.True(t, ok)
	require.False(t, nom)
	require.Equal(t, uint64(42), tie)

	_, ok, nom = iceAttrs(stacks.EncodeSTUNBindingSuccess(tx, mapped))
	require.False(t, ok, "a plain peer's answer has no tie-breaker")
	require.False(t, nom)
	for _, junk := range [][]byte{nil, make([]byte, 20), append(make([]byte, 20), 0x80, 0x2a, 0xff, 0xff)} {
		_, ok, _ = iceAttrs(junk) // never panics
		require.False(t, ok)
	}
}
