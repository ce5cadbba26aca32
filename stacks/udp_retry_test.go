//go:build !windows

package stacks

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// udpReadError is what a UDP socket's read returns when it fails with
// errno.
func udpReadError(errno syscall.Errno) error {
	return &net.OpError{Op: "read", Net: "udp", Err: os.NewSyscallError("recvmsg", errno)}
}

// udpStep is one answer of a udpScriptReader: an error, or a datagram;
// or, with gate, no answer but a wait until gate is closed.
type udpStep struct {
	err  error
	data string
	from netip.AddrPort
	gate chan struct{}
}

// udpScriptReader wraps a listener's socket: while the socket is open,
// its reads answer from the script, in order (only the OS's answer is made
// up); past the script, a read waits for release and then reads the socket
// itself (closed by then: net.ErrClosed). It records the time of every
// read.
type udpScriptReader struct {
	conn    *net.UDPConn
	release chan struct{}
	once    sync.Once

	mu     sync.Mutex
	script []udpStep
	calls  []time.Time
}

func (r *udpScriptReader) ReadMsgUDPAddrPort(b, oob []byte) (int, int, int, netip.AddrPort, error) {
	r.mu.Lock()
	r.calls = append(r.calls, time.Now())
	if err := r.conn.SetReadDeadline(time.Time{}); err != nil {
		r.mu.Unlock()
		return 0, 0, 0, netip.AddrPort{}, err // the socket is closed: net.ErrClosed
	}
	if len(r.script) == 0 {
		r.mu.Unlock()
		<-r.release
		return r.conn.ReadMsgUDPAddrPort(b, oob)
	}
	s := r.script[0]
	r.script = r.script[1:]
	r.mu.Unlock()
	if s.gate != nil {
		<-s.gate
		return r.ReadMsgUDPAddrPort(b, oob)
	}
	if s.err != nil {
		return 0, 0, 0, netip.AddrPort{}, s.err
	}
	return copy(b, s.data), 0, 0, s.from, nil
}

func (r *udpScriptReader) callTimes() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.calls...)
}

// newScriptedUDPListener is a UDP listener on a loopback socket whose
// reads answer from script.
func newScriptedUDPListener(t *testing.T, script ...udpStep) (*udpListener, *udpScriptReader) {
	t.Helper()
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	require.NoError(t, err)
	rd := &udpScriptReader{conn: conn, release: make(chan struct{}), script: script}
	l, err := newUDPListenerReading(conn, rd, "udp", Options{})
	require.NoError(t, err)
	return l, rd
}

// end closes l (and so its socket, when no peer is left) and lets its
// reader go on: the reading must end.
func (r *udpScriptReader) end(l *udpListener) {
	_ = l.Close()
	r.once.Do(func() { close(r.release) })
	<-l.done
}

func udpGaps(calls []time.Time) []time.Duration {
	var gaps []time.Duration
	for i := 1; i < len(calls); i++ {
		gaps = append(gaps, calls[i].Sub(calls[i-1]))
	}
	return gaps
}

// BUG (UDP read spin): the UDP listener's reader carried on at once after
// any read error but net.ErrClosed: an error that keeps coming back (out
// of buffers or memory, ENOBUFS, ENOMEM, or an error of the socket) made
// it spin at 100% CPU. It waits before reading again (5 ms doubling up to
// 1 s, from 5 ms again after a datagram). An ICMP error (ECONNREFUSED: a
// soft error, one per ICMP message) is no reason to wait: the reading goes
// on at once, and the wait stays where it was. Fake time: the waits are
// exact.
func TestUDPListenerReadErrorBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		peer := netip.MustParseAddrPort("127.0.0.1:5000")
		enobufs, enomem := udpReadError(syscall.ENOBUFS), udpReadError(syscall.ENOMEM)
		l, rd := newScriptedUDPListener(t,
			udpStep{err: enobufs}, udpStep{err: enomem}, udpStep{err: udpReadError(syscall.ECONNREFUSED)},
			udpStep{err: enobufs}, udpStep{err: enobufs},
			udpStep{data: "one", from: peer},
			udpStep{err: enobufs}, udpStep{err: enobufs},
			udpStep{data: "two", from: peer},
		)
		defer rd.end(l)
		time.Sleep(time.Minute) // fake time: past every wait
		synctest.Wait()
		calls := rd.callTimes()
		require.Len(t, calls, 10, "9 scripted reads, then the one that waits")
		ms := time.Millisecond
		require.Equal(t, []time.Duration{5 * ms, 10 * ms, 0, 20 * ms, 40 * ms, 0, 5 * ms, 10 * ms, 0}, udpGaps(calls),
			"the waits between reads: doubling from 5 ms, none after an ICMP error, again from 5 ms after a datagram")

		// the datagrams went to their peer
		tr, err := l.Accept()
		require.NoError(t, err)
		defer tr.Close()
		require.Equal(t, peer.String(), tr.RemoteAddr().String())
		buf := make([]byte, 16)
		for _, want := range []string{"one", "two"} {
			n, err := tr.Read(buf)
			require.NoError(t, err)
			require.Equal(t, want, string(buf[:n]))
		}
	})
}

// TestUDPListenerReadBackoffCapped: the wait doubles up to 1 s and stays
// there while the reads keep failing.
func TestUDPListenerReadBackoffCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		script := make([]udpStep, 12)
		for i := range script {
			script[i].err = udpReadError(syscall.ENOBUFS)
		}
		l, rd := newScriptedUDPListener(t, script...)
		defer rd.end(l)
		time.Sleep(time.Hour) // fake time: past every wait
		synctest.Wait()
		calls := rd.callTimes()
		require.Len(t, calls, 13)
		ms := time.Millisecond
		require.Equal(t, []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms,
			time.Second, time.Second, time.Second, time.Second}, udpGaps(calls))
	})
}

// TestUDPListenerCloseDuringReadBackoff: closing the socket while the
// reader waits to read again ends the wait at once: the reader ends
// without any time passing and leaves no timer behind. While an accepted
// peer keeps the socket open after the listener's Close, the reader keeps
// waiting and reading for it.
func TestUDPListenerCloseDuringReadBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		peer := netip.MustParseAddrPort("127.0.0.1:5000")
		script := []udpStep{{data: "hello", from: peer}}
		for range 100 {
			script = append(script, udpStep{err: udpReadError(syscall.ENOMEM)})
		}
		l, rd := newScriptedUDPListener(t, script...)
		defer rd.end(l)
		tr, err := l.Accept()
		require.NoError(t, err)
		defer tr.Close()
		time.Sleep(3 * time.Second) // fake time: into the 1 s waits
		synctest.Wait()
		n := len(rd.callTimes())
		require.Greater(t, n, 9, "in the 1 s waits")

		require.NoError(t, l.Close()) // the peer keeps the socket, and the reader, going
		time.Sleep(2 * time.Second)   // fake time: more 1 s waits
		synctest.Wait()
		require.Equal(t, n+2, len(rd.callTimes()), "the reader stopped with the listener while a peer was left")
		select {
		case <-l.done:
			t.Fatal("the reader ended while a peer was left")
		default:
		}

		t0 := time.Now()
		require.NoError(t, tr.Close()) // the last peer: the socket closes
		<-l.done
		require.Zero(t, time.Since(t0), "the close waited for the backoff")
		require.Equal(t, n+3, len(rd.callTimes()), "one read after the close: net.ErrClosed")
	})
}
