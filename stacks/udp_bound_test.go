//go:build !windows

package stacks

import (
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
)

// liveHeap returns the live heap after a collection.
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// BUG (UDP listener memory): the listener bounded what it queues per peer
// in datagrams only (UDPPeerQueue, 256) and its new peers in number only
// (UDPAcceptQueue, 1024): a peer whose application does not read made it
// hold 256 datagrams of up to 64 KiB (16 MiB, whatever the connection's
// receive buffer), and peers that are never accepted, one per source port,
// 16 MiB each (16 GiB for the accept queue). The bytes are bounded too:
// UDPPeerQueueBytes per peer, UDPAcceptQueueBytes for all the peers not
// yet accepted. The datagrams come from a script (only the OS's answer is
// made up); the listener's own demultiplexing queues them.
func TestUDPListenerQueuedBytesBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const size, waiting = 60000, 4
		big := strings.Repeat("x", size)
		peer := func(i int) netip.AddrPort {
			return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(5000+i))
		}
		// peer 0 is accepted after its first datagram; then every peer
		// sends a full queue of large datagrams, peers 1.. never accepted
		gate := make(chan struct{})
		script := []udpStep{{data: big, from: peer(0)}, {gate: gate}}
		for range UDPPeerQueue {
			for i := range waiting + 1 {
				script = append(script, udpStep{data: big, from: peer(i)})
			}
		}
		base := liveHeap()
		l, rd := newScriptedUDPListener(t, script...)
		defer rd.end(l)
		tr, err := l.Accept()
		require.NoError(t, err)
		defer tr.Close()
		accepted := tr.(*udpPeer)
		close(gate)
		synctest.Wait() // the script is read: the reader waits past it

		held := liveHeap() - base
		var pending []*udpPeer
		for range waiting {
			tr, err := l.Accept()
			require.NoError(t, err)
			pending = append(pending, tr.(*udpPeer))
			defer tr.Close()
		}
		queued := func(p *udpPeer) int { return len(p.queue) * size }
		pendingQueued := 0
		for _, p := range pending {
			pendingQueued += queued(p)
			require.NotEmpty(t, p.queue, "peer %s got none of its datagrams", p.remote)
		}
		t.Logf("heap held %d bytes; the accepted peer queues %d bytes, the %d waiting peers %d bytes; %d datagrams dropped",
			held, queued(accepted), waiting, pendingQueued, l.Dropped())
		require.LessOrEqual(t, queued(accepted), UDPPeerQueueBytes)
		require.Greater(t, queued(accepted), UDPPeerQueueBytes-size, "the accepted peer's queue is not full")
		require.LessOrEqual(t, pendingQueued, UDPAcceptQueueBytes)
		require.LessOrEqual(t, held, int64(UDPPeerQueueBytes+UDPAcceptQueueBytes+1<<20))

		// the datagrams queued are whole, and reading frees their room
		buf := make([]byte, 65536)
		for range len(accepted.queue) {
			n, err := accepted.Read(buf)
			require.NoError(t, err)
			require.Equal(t, size, n)
		}
		require.Zero(t, accepted.bytes.Load())
	})
}
