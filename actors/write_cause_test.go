package actors

import (
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

// stolenErrT is a socket that died of fault while both the reader and a
// writer waited on it, the reader taking the socket's error first (the
// kernel hands it out once): its pending write fails with EPIPE, and its
// read returns fault, but only once the transport is closed, so that the
// reader's report cannot reach the actor before the write's. What the
// connection reports must name fault, not the broken pipe.
type stolenErrT struct {
	*pipeTransport
	fault    error
	dead     chan struct{} // closed when the socket dies
	aborted  chan struct{} // closed at the first Abort or Close
	reading  chan struct{} // closed when the reader waits in Read
	once     sync.Once
	readOnce sync.Once
}

func (p *stolenErrT) Write([]byte) (int, error) {
	<-p.dead
	return 0, &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}
}

func (p *stolenErrT) Read([]byte) (int, error) {
	p.readOnce.Do(func() { close(p.reading) })
	<-p.dead
	<-p.aborted
	return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", p.fault)}
}

func (p *stolenErrT) Abort() error {
	p.once.Do(func() { close(p.aborted) })
	return p.pipeTransport.Abort()
}

func (p *stolenErrT) Close() error { return p.Abort() }

// TestWriteBrokenPipeReportsTheReadersCause: when a socket dies while a
// write waits (connTimeout's TCP_USER_TIMEOUT, a reset) and the reader
// takes its error, the write gets EPIPE; the connection's ConnectionError
// and the message's SendError must unwrap to the socket's error all the
// same (ETIMEDOUT for connTimeout: they named the broken pipe whenever the
// write's report came first).
func TestWriteBrokenPipeReportsTheReadersCause(t *testing.T) {
	for _, fault := range []syscall.Errno{syscall.ETIMEDOUT, syscall.ECONNRESET} {
		t.Run(fault.Error(), func(t *testing.T) {
			sys := NewSystem(Config{})
			defer shutdown(t, sys)
			addr := netip.MustParseAddrPort("127.0.0.1:9")
			var made *stolenErrT
			st := &scriptStack{fakeStack: newFakeStack(map[netip.AddrPort]outcome{addr: {kind: "ok"}}),
				wrap: func(p *pipeTransport) stacks.Transport {
					made = &stolenErrT{pipeTransport: p, fault: fault, dead: make(chan struct{}), aborted: make(chan struct{}), reading: make(chan struct{})}
					return made
				}}
			conn, link := startScripted(t, sys, &messages.ConnectionConfig{Remotes: endpoints(addr), Stacks: []stacks.Stack{st}})
			id := sys.NewID()
			batch := &messages.SendBatch{Messages: []*messages.SendMessage{{SendID: id, MessageID: id, Data: []byte("blocked"),
				EndOfMessage: true, Props: &messages.MessageProps{Priority: 100, Reliable: true, ChecksumLen: -1}}}}
			out := expectOutcomes(t, link, batch)
			sys.AS.Root.Send(conn, batch)
			<-made.reading // the reader waits on the socket, as the writer does
			close(made.dead)
			<-link.Done()
			require.ErrorIs(t, link.Err(), fault, "the ConnectionError names the socket's error")
			sendErr := out.taken(t)[0]
			require.ErrorIs(t, sendErr, fault, "the SendError names the socket's error")
			require.NotErrorIs(t, sendErr, syscall.EPIPE)
		})
	}
}
