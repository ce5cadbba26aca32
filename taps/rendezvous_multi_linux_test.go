package taps

import (
	"net/netip"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRendezvousTCPFirstLocalCannotBind: TCP uses one local candidate, the
// first that binds: a's first local address is taken (a socket bound
// without SO_REUSEPORT), so a rendezvouses from its second, and b, which lists
// both, ends on the same connection.
func TestRendezvousTCPFirstLocalCannotBind(t *testing.T) {
	sys, _ := newRendezvousSystem(t)
	ctx := testCtx(t)
	ports := freeTCPPorts(t, 2)
	// bound, not listening (a listener would accept b's connect to it)
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer syscall.Close(fd)
	require.NoError(t, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 2}, Port: int(ports[0])}))
	a := NewPreconnection(WithSystem(sys), WithLocalEndpoint(rvLocalAt("127.0.0.2", ports[0]), rvLocal(ports[0])),
		WithRemoteEndpoint(rvRemote(ports[1])))
	b := NewPreconnection(WithSystem(sys), WithLocalEndpoint(rvLocal(ports[1])),
		WithRemoteEndpoint(rvRemoteAt("127.0.0.2", ports[0]), rvRemote(ports[0])))
	ca, cb := rendezvousPair(t, ctx, a, b, nil)
	sameConnection(t, ca, cb, "tcp")
	requireLocal(t, ca, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ports[0]))
	exchange(t, ctx, ca, cb)
}
