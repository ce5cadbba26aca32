package stacks

import (
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestUDPTwoPeersOneListener(t *testing.T) {
	ctx := testCtx(t)
	ln, err := UDP().Listen(ctx, Options{Local: loopback4})
	require.NoError(t, err)
	defer ln.Close()
	remote := addrPort(t, ln.Addr())
	a, err := UDP().Dial(ctx, remote, Options{})
	require.NoError(t, err)
	defer a.Close()
	b, err := UDP().Dial(ctx, remote, Options{})
	require.NoError(t, err)
	defer b.Close()

	// a sends two datagrams back to back: boundaries must survive.
	_, err = a.Write([]byte("one"))
	require.NoError(t, err)
	_, err = a.Write([]byte("two!"))
	require.NoError(t, err)
	pa, err := ln.Accept()
	require.NoError(t, err)
	defer pa.Close()
	_, err = b.Write([]byte("from b"))
	require.NoError(t, err)
	pb, err := ln.Accept()
	require.NoError(t, err)
	defer pb.Close()
	require.Equal(t, a.LocalAddr().String(), pa.RemoteAddr().String())
	require.Equal(t, b.LocalAddr().String(), pb.RemoteAddr().String())

	buf := make([]byte, 100)
	n, err := pa.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "one", string(buf[:n]))
	n, err = pa.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "two!", string(buf[:n]))
	n, err = pb.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "from b", string(buf[:n]))

	// replies go to the right peer, one datagram each
	_, err = pb.Write([]byte("to b"))
	require.NoError(t, err)
	_, err = pa.Write([]byte("to a"))
	require.NoError(t, err)
	n, err = a.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "to a", string(buf[:n]))
	n, err = b.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "to b", string(buf[:n]))

	// a short buffer reports truncation on both sides
	_, err = a.Write([]byte("0123456789"))
	require.NoError(t, err)
	n, err = pa.Read(buf[:4])
	require.ErrorIs(t, err, ErrMessageTruncated)
	require.Equal(t, 4, n)
	_, err = pa.Write([]byte("0123456789"))
	require.NoError(t, err)
	n, err = a.Read(buf[:4])
	require.ErrorIs(t, err, ErrMessageTruncated)
	require.Equal(t, 4, n)

	info, err := pa.(SocketInfo).Info()
	require.NoError(t, err)
	require.Equal(t, MaxLen{Bytes: 65507}, info.SendMsgMaxLen)
	require.Equal(t, "udp", info.Stack)
	require.NoError(t, a.CloseWrite()) // no-op
}

func TestUDPPeerReadDeadlineAndClose(t *testing.T) {
	ctx := testCtx(t)
	ln, err := UDP().Listen(ctx, Options{Local: loopback4})
	require.NoError(t, err)
	remote := addrPort(t, ln.Addr())
	c, err := UDP().Dial(ctx, remote, Options{})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("hi"))
	require.NoError(t, err)
	p, err := ln.Accept()
	require.NoError(t, err)
	buf := make([]byte, 10)
	_, err = p.Read(buf)
	require.NoError(t, err)
	require.NoError(t, p.SetReadDeadline(time.Now().Add(10*time.Millisecond)))
	_, err = p.Read(buf)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.NoError(t, p.SetReadDeadline(time.Time{}))

	// Listener Close keeps the accepted peer working ...
	require.NoError(t, ln.Close())
	_, err = c.Write([]byte("still"))
	require.NoError(t, err)
	n, err := p.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "still", string(buf[:n]))
	// ... until it is closed too, which closes the socket.
	require.NoError(t, p.Abort())
	_, err = p.Read(buf)
	require.ErrorIs(t, err, net.ErrClosed)
	ul := ln.(*udpListener)
	<-ul.done
}

func TestUDPPeerQueueDropsWhenFull(t *testing.T) {
	udpPeerQueueLen = 4
	defer func() { udpPeerQueueLen = UDPPeerQueue }()
	ctx := testCtx(t)
	ln, err := UDP().Listen(ctx, Options{Local: loopback4})
	require.NoError(t, err)
	defer ln.Close()
	c, err := UDP().Dial(ctx, addrPort(t, ln.Addr()), Options{})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("first"))
	require.NoError(t, err)
	p, err := ln.Accept()
	require.NoError(t, err)
	defer p.Close()
	// Fill the peer queue without reading, then check the drop counter
	// once the last datagram was handled: a marker datagram is sent by a
	// second peer, whose arrival proves the listener read everything sent
	// before it on the same socket (loopback keeps the order).
	for i := 0; i < 4+10; i++ { // far below the socket buffer
		_, err = c.Write([]byte("x"))
		require.NoError(t, err)
	}
	m, err := UDP().Dial(ctx, addrPort(t, ln.Addr()), Options{})
	require.NoError(t, err)
	defer m.Close()
	_, err = m.Write([]byte("marker"))
	require.NoError(t, err)
	pm, err := ln.Accept()
	require.NoError(t, err)
	defer pm.Close()
	require.Equal(t, uint64(11), ln.(*udpListener).Dropped())
}
