package stacks

import (
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLiveCongestion: LiveOptions.Congestion sets TCP_CONGESTION to a
// control the kernel offers, leaves the socket alone for one it does not
// offer, and "" restores the system default; Congestion reads it back.
func TestLiveCongestion(t *testing.T) {
	avail, err := os.ReadFile(availableCongestionFile)
	if err != nil {
		t.Skip("no /proc congestion control list")
	}
	def, err := os.ReadFile(defaultCongestionFile)
	require.NoError(t, err)
	system := strings.TrimSpace(string(def))
	var other string
	for _, name := range strings.Fields(string(avail)) {
		if name != system {
			other = name
			break
		}
	}
	if other == "" {
		t.Skip("the kernel offers a single congestion control")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	tr, err := TCP().Dial(t.Context(), ln.Addr().(*net.TCPAddr).AddrPort(), Options{})
	require.NoError(t, err)
	defer tr.Close()
	peer, err := ln.Accept()
	require.NoError(t, err)
	defer peer.Close()
	get := func() string {
		name, err := Congestion(tr)
		require.NoError(t, err)
		return name
	}
	set := func(name string) {
		require.NoError(t, ApplyLive(tr, LiveOptions{Congestion: &name}))
	}
	require.Equal(t, system, get())
	set(other)
	require.Equal(t, other, get())
	set("gotaps-not-a-congestion-control")
	require.Equal(t, other, get(), "not offered: the socket keeps what it has")
	set("")
	require.Equal(t, system, get(), "the system default again")
	require.Equal(t, CongestionAvailable("lp"), slices.Contains(strings.Fields(string(avail)), "lp"))

	u, err := UDP().Dial(t.Context(), netip.MustParseAddrPort("127.0.0.1:9"), Options{})
	require.NoError(t, err)
	defer u.Close()
	_, err = Congestion(u)
	require.ErrorIs(t, err, ErrNotApplicable)
	lp := "lp"
	require.NoError(t, ApplyLive(u, LiveOptions{Congestion: &lp}), "ignored on UDP")
}
