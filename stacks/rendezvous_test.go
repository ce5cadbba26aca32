package stacks

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
)

func udpSocket(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// readOne reads one datagram from c, or nil after wait.
func readOne(t *testing.T, c *net.UDPConn, wait time.Duration) []byte {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(wait)))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	require.NoError(t, err)
	return buf[:n]
}

// readApp reads one datagram from tr with a deadline.
func readApp(t *testing.T, tr Transport) string {
	t.Helper()
	require.NoError(t, tr.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 2048)
	n, err := tr.Read(buf)
	require.NoError(t, err)
	return string(buf[:n])
}

// TestConnectRendezvousSocket: the socket connected in place reads the
// early datagrams first, then what the peer sent before and after the
// connect, never a stranger's datagram nor STUN, and answers the peer's
// Binding requests.
func TestConnectRendezvousSocket(t *testing.T) {
	for _, stack := range []string{"udp", "udplite"} {
		t.Run(stack, func(t *testing.T) {
			sock, err := BindRendezvousSocket(testCtx(t), stack, Options{Local: loopback4})
			if errors.Is(err, ErrUDPLiteUnsupported) {
				t.Skip(err)
			}
			require.NoError(t, err)
			local := addrPort(t, sock.LocalAddr())
			if stack == "udplite" {
				// a UDP-Lite peer needs a UDP-Lite socket
				peerSock, err := BindRendezvousSocket(testCtx(t), stack, Options{Local: loopback4})
				require.NoError(t, err)
				t.Cleanup(func() { _ = peerSock.Close() })
				connectRendezvousCheck(t, stack, sock, local, peerSock, nil)
				return
			}
			connectRendezvousCheck(t, stack, sock, local, udpSocket(t), udpSocket(t))
		})
	}
}

func connectRendezvousCheck(t *testing.T, stack string, sock *net.UDPConn, local netip.AddrPort, peer, stranger *net.UDPConn) {
	peerAddr := addrPort(t, peer.LocalAddr())
	if stranger != nil {
		_, err := stranger.WriteToUDPAddrPort([]byte("stranger"), local)
		require.NoError(t, err)
	}
	_, err := peer.WriteToUDPAddrPort([]byte("queued"), local)
	require.NoError(t, err)
	tr, err := ConnectRendezvousSocket(sock, stack, peerAddr, Options{}, [][]byte{[]byte("early")})
	require.NoError(t, err)
	defer tr.Close()
	_, _, err = sock.ReadFromUDPAddrPort(make([]byte, 1))
	require.ErrorIs(t, err, net.ErrClosed, "the unconnected socket's descriptor is closed")
	require.Equal(t, peerAddr.String(), tr.RemoteAddr().String())
	require.Equal(t, local.String(), tr.LocalAddr().String())
	_, isTOS := tr.(TOSDatagrams)
	require.True(t, isTOS, "TOS datagrams as the stack's Dial")
	if stack == "udplite" {
		_, ok := tr.(ChecksumCoverage)
		require.True(t, ok)
	}
	info, err := tr.(SocketInfo).Info()
	require.NoError(t, err)
	require.Equal(t, stack, info.Stack)

	require.Equal(t, "early", readApp(t, tr))
	require.Equal(t, "queued", readApp(t, tr), "the stranger's datagram is skipped")

	tx := NewSTUNTransactionID()
	_, err = peer.WriteToUDPAddrPort(EncodeSTUNBindingRequest(tx, nil), local)
	require.NoError(t, err)
	_, err = peer.WriteToUDPAddrPort([]byte("data"), local)
	require.NoError(t, err)
	require.Equal(t, "data", readApp(t, tr), "the Binding request is not delivered")
	resp := readOne(t, peer, 5*time.Second)
	mapped, err := DecodeSTUNBindingResponse(resp, tx, nil)
	require.NoError(t, err)
	require.Equal(t, peerAddr, mapped)

	_, err = tr.Write([]byte("back"))
	require.NoError(t, err)
	require.Equal(t, "back", string(readOne(t, peer, 5*time.Second)))
	require.NoError(t, tr.Close())
	// the port is free again (the duplicate descriptor is gone too)
	again, err := BindRendezvousSocket(testCtx(t), stack, Options{Local: local})
	require.NoError(t, err)
	require.NoError(t, again.Close())
}

// TestQUICRendezvous: one endpoint dials, the other accepts from it only
// (a stranger is refused); both sockets are closed once Close was called
// and the connection ended.
func TestQUICRendezvous(t *testing.T) {
	pki := newTestPKI(t)
	ctx := testCtx(t)
	any4 := Options{Local: loopback4}
	clientOpts := any4
	clientOpts.TLS = pki.clientConfig()
	clientOpts.ServerName = "localhost"
	client, err := ListenQUICRendezvous(ctx, clientOpts, nil, nil)
	require.NoError(t, err)
	clientAddr := addrPort(t, client.Addr())
	server, err := ListenQUICRendezvous(ctx, any4, pki.serverConfig(), func(a netip.AddrPort) bool { return a == clientAddr })
	require.NoError(t, err)
	serverAddr := addrPort(t, server.Addr())

	// a stranger is refused before the handshake
	strangerOpts := clientOpts
	_, err = QUIC().Dial(ctx, serverAddr, strangerOpts)
	var te *quic.TransportError
	require.ErrorAs(t, err, &te)
	require.Equal(t, quic.ConnectionRefused, te.ErrorCode)

	_, err = client.AcceptConn(ctx)
	require.Error(t, err, "the client endpoint has no server role")

	type accepted struct {
		tr  Transport
		err error
	}
	acc := make(chan accepted, 1)
	go func() {
		c, err := server.AcceptConn(ctx)
		if err != nil {
			acc <- accepted{err: err}
			return
		}
		if got := addrPort(t, c.RemoteAddr()); got != clientAddr {
			c.Abort()
			acc <- accepted{err: errors.New("accepted " + got.String())}
			return
		}
		tr, err := c.FirstStream(ctx)
		acc <- accepted{tr, err}
	}()
	ct, err := client.Dial(ctx, serverAddr)
	require.NoError(t, err)
	require.Equal(t, clientAddr.String(), ct.LocalAddr().String(), "dialed from the endpoint's socket")
	_, err = ct.Write([]byte("hi"))
	require.NoError(t, err)
	a := <-acc
	require.NoError(t, a.err)
	st := a.tr
	buf := make([]byte, 2)
	require.NoError(t, st.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = st.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "hi", string(buf))

	// Close keeps the endpoints open for their connection
	require.NoError(t, client.Close())
	require.NoError(t, server.Close())
	_, err = ct.Write([]byte("ok"))
	require.NoError(t, err)
	_, err = st.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "ok", string(buf))

	require.NoError(t, ct.Abort())
	require.NoError(t, st.Abort())
	waitQUICDone(t, ct)
	waitQUICDone(t, st)
	for _, ap := range []netip.AddrPort{clientAddr, serverAddr} {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
		require.NoError(t, err, "the endpoint's socket is still open")
		require.NoError(t, c.Close())
	}
}

// TestQUICRendezvousDialRetries: a Dial whose ctx ends before the peer
// answers fails; the endpoint stays usable and a later Dial succeeds once
// the peer listens.
func TestQUICRendezvousDialRetries(t *testing.T) {
	pki := newTestPKI(t)
	ctx := testCtx(t)
	port := udpSocket(t) // reserve a port, then free it: the peer's, silent
	peerAddr := addrPort(t, port.LocalAddr())
	require.NoError(t, port.Close())
	opts := Options{Local: loopback4, TLS: pki.clientConfig(), ServerName: "localhost"}
	client, err := ListenQUICRendezvous(ctx, opts, nil, nil)
	require.NoError(t, err)
	defer client.Close()
	actx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err = client.Dial(actx, peerAddr)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)

	server, err := ListenQUICRendezvous(ctx, Options{Local: peerAddr}, pki.serverConfig(), func(netip.AddrPort) bool { return true })
	require.NoError(t, err)
	defer server.Close()
	ct, err := client.Dial(ctx, peerAddr)
	require.NoError(t, err)
	require.NoError(t, ct.Abort())
	waitQUICDone(t, ct)
}

// TestQUICRendezvousNonQUIC: a QUIC rendezvous endpoint sends a datagram
// that is not QUIC (a STUN Binding request) from its socket (WriteTo), and
// hands the datagrams it receives that are not QUIC to ReadNonQUIC (a
// QUIC-looking one is not among them), until its ctx ends or the endpoint
// is closed (net.ErrClosed).
func TestQUICRendezvousNonQUIC(t *testing.T) {
	ctx := testCtx(t)
	q, err := ListenQUICRendezvous(ctx, Options{Local: loopback4}, nil, nil)
	require.NoError(t, err)
	defer q.Close()
	qa := addrPort(t, q.Addr())
	peer := udpSocket(t)
	pa := addrPort(t, peer.LocalAddr())

	q.ListenNonQUIC()
	req := EncodeSTUNBindingRequest(NewSTUNTransactionID(), nil)
	require.NoError(t, q.WriteTo(req, pa))
	require.Equal(t, req, readOne(t, peer, 5*time.Second), "from the endpoint's socket")

	// a QUIC short-header packet (fixed bit set) goes to quic-go; the STUN
	// answer after it to ReadNonQUIC
	quicish := append([]byte{0x40}, make([]byte, 30)...)
	_, err = peer.WriteToUDPAddrPort(quicish, qa)
	require.NoError(t, err)
	answer := slices.Clone(req)
	answer[1] = 0x01 // a Binding success response
	_, err = peer.WriteToUDPAddrPort(answer, qa)
	require.NoError(t, err)
	buf := make([]byte, 1500)
	n, from, err := q.ReadNonQUIC(ctx, buf)
	require.NoError(t, err)
	require.Equal(t, answer, buf[:n])
	require.Equal(t, pa, from)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err = q.ReadNonQUIC(cctx, buf)
	require.ErrorIs(t, err, context.Canceled)

	require.NoError(t, q.Close())
	_, _, err = q.ReadNonQUIC(ctx, buf)
	require.ErrorIs(t, err, net.ErrClosed)
}
