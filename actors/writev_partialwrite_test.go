//go:build linux

package actors

import (
	"context"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"testing"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// unixScriptT is a real stream socket (a socketpair whose peer never
// reads, with a small send buffer): the connection's optimistic writev
// (datapath_writev.go) takes what the kernel accepts, then EAGAIN hands the
// rest to the writer goroutine, whose WriteBuffers is scripted to fail
// after a chosen number of bytes.
type unixScriptT struct {
	*net.UnixConn
	mu      sync.Mutex
	offered int // bytes the writer goroutine was offered
	target  int // the batch bytes written in all when it fails
	total   int // the batch's bytes
	calls   int
}

func (u *unixScriptT) RemoteAddr() net.Addr {
	return net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:9"))
}
func (u *unixScriptT) LocalAddr() net.Addr {
	return net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:40000"))
}
func (u *unixScriptT) Abort() error { return u.Close() }

func (u *unixScriptT) WriteBuffers(b *net.Buffers) (int64, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.calls++
	u.offered = buffersLen(*b)
	took := u.total - u.offered // what the optimistic writev wrote
	n := max(0, min(u.target-took, u.offered))
	stacks.ConsumeBuffers(b, n)
	return int64(n), syscall.EPIPE
}

// TestPartialWriteWritevThenError: (2) on a real socket, a short writev
// (the kernel takes part of the batch, then EAGAIN), then an error on the
// retry: the messages within what was written in all get Sent, the rest
// SendError.
func TestPartialWriteWritevThenError(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	require.NoError(t, syscall.SetsockoptInt(fds[0], syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4096))
	f := os.NewFile(uintptr(fds[0]), "partialwrite")
	c, err := net.FileConn(f)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	peer := os.NewFile(uintptr(fds[1]), "partialwrite-peer")
	defer peer.Close() //nolint:errcheck // never read: the writer's buffer fills

	const size, count = 64 << 10, 6
	ut := &unixScriptT{UnixConn: c.(*net.UnixConn), total: size * count, target: size*2 + size/2}

	sys := NewSystem(Config{})
	defer shutdown(t, sys)
	addr := netip.MustParseAddrPort("127.0.0.1:9")
	st := &scriptStack{fakeStack: newFakeStack(map[netip.AddrPort]outcome{addr: {kind: "ok"}}),
		wrap: func(p *pipeTransport) stacks.Transport { _ = p.Close(); return ut }}
	cfg := &messages.ConnectionConfig{Remotes: endpoints(addr), Stacks: []stacks.Stack{st}}
	link := NewLink(sys.NewID(), 0, 0, false)
	res, err := Ask(context.Background(), sys, sys.Root, &InitiateConnection{Config: cfg, Link: link})
	require.NoError(t, err)
	conn := res.(*ConnectionStarted).Conn
	<-link.Ready()
	require.NoError(t, link.EstablishmentErr())

	var mu sync.Mutex
	outcomes := make([][]error, count)
	batch := &messages.SendBatch{}
	for i := range count {
		id := sys.NewID()
		require.True(t, link.ExpectSend(id, func(err error) {
			mu.Lock()
			outcomes[i] = append(outcomes[i], err)
			mu.Unlock()
		}))
		batch.Messages = append(batch.Messages, &messages.SendMessage{SendID: id, MessageID: id, Data: make([]byte, size),
			EndOfMessage: true, Props: &messages.MessageProps{Priority: 100, Reliable: true, ChecksumLen: -1}})
	}
	sys.AS.Root.Send(conn, batch)
	<-link.Done()
	require.Error(t, link.Err())

	ut.mu.Lock()
	calls, took := ut.calls, ut.total-ut.offered
	ut.mu.Unlock()
	require.Equal(t, 1, calls, "the rest went to the writer goroutine once")
	require.Greater(t, took, 0, "the optimistic writev was short, not empty")
	require.Less(t, took, ut.target, "the kernel took less than the scripted cut")
	mu.Lock()
	defer mu.Unlock()
	for i := range count {
		require.Len(t, outcomes[i], 1, "message %d: exactly one of Sent and SendError", i)
		if (i+1)*size <= ut.target {
			require.NoError(t, outcomes[i][0], "message %d was written whole: Sent", i)
		} else {
			require.ErrorIs(t, outcomes[i][0], syscall.EPIPE, "message %d: SendError", i)
		}
	}
}
