package taps

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// Behaviour behind the QUIC figures of tapsbench W11/W12 (resumed
// handshakes, the write and read paths of a QUIC stream); no timing is
// asserted here.

// quicOnly requires multistreaming, so that only QUIC is selected for a
// secure preconnection.
func quicOnly(t *testing.T) *TransportProperties {
	tp := NewTransportProperties()
	require.NoError(t, tp.Require(Multistreaming))
	return tp
}

// quicPair starts a QUIC-only secure echo listener and returns it with a
// Preconnection that reaches it over QUIC.
func quicPair(t *testing.T) (*Listener, *Preconnection) {
	t.Helper()
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ln := secureListener(t, sys, pki.serverSec(), quicOnly(t))
	return ln, securePre(sys, ln, pki.clientSec(), quicOnly(t))
}

func TestQUICInitiateResumesTheSessionOfAnImmediatelyClosedOne(t *testing.T) {
	ln, pre := quicPair(t)
	ctx := testCtx(t)
	// the first connection is closed as soon as it is Ready (no data, no
	// other call): its session ticket still reaches the System's cache
	first, err := pre.Initiate(ctx)
	require.NoError(t, err)
	require.NoError(t, first.Close())
	<-first.Done()
	second, err := pre.Initiate(ctx)
	require.NoError(t, err)
	props, err := second.GetPropertiesContext(ctx)
	require.NoError(t, err)
	require.Equal(t, "quic", props.Stack)
	require.True(t, props.Socket.Resumed, "the second Initiate resumes the first one's session")
	require.False(t, props.Socket.Used0RTT, "no early data without InitiateWithSend of a safely replayable message")
	roundTrip(t, second, "resumed")
	require.NoError(t, second.Close())
	<-second.Done()
	ln.Stop()
}

func TestQUICMessagesOfMixedSizesArriveIntactAndInOrder(t *testing.T) {
	ln, pre := quicPair(t)
	ctx := testCtx(t)
	c, err := pre.Initiate(ctx)
	require.NoError(t, err)
	require.Equal(t, "quic", c.GetProperties().Stack)
	// small messages are queued on the stream by the connection itself,
	// large ones by a writer goroutine; large received ones are read
	// straight into their buffers, each after a short read of its header
	sizes := []int{1, 100, 20 << 10, 300 << 10, 3, 64 << 10, 16<<10 - 4, 16 << 10, 16<<10 + 1, 5, 0, 70 << 10}
	var sent [][]byte
	for i, n := range sizes {
		m := bytes.Repeat([]byte{byte('a' + i)}, n)
		sent = append(sent, m)
		require.NoError(t, c.Send(ctx, m, nil), "message %d (%d bytes)", i, n)
	}
	kept := map[int]*Message{}
	for i, want := range sent {
		m, err := c.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, len(want), len(m.Data), "message %d", i)
		require.True(t, bytes.Equal(want, m.Data), "message %d", i)
		if i%2 == 1 {
			m.Release() // its buffer may take a later message
		} else {
			kept[i] = m
		}
	}
	for i, m := range kept {
		require.True(t, bytes.Equal(sent[i], m.Data), "kept message %d intact after later receives", i)
	}
	require.NoError(t, c.Close())
	<-c.Done()
	ln.Stop()
}

func TestQUICClonesCloseWithoutLeavingTheSession(t *testing.T) {
	ln, pre := quicPair(t)
	ctx := testCtx(t)
	c, err := pre.Initiate(ctx)
	require.NoError(t, err)
	roundTrip(t, c, "first stream")
	// streams come and go (gracefully closed) while the session stays up
	for i := 0; i < 5; i++ {
		cl, err := c.Clone(ctx)
		require.NoError(t, err)
		roundTrip(t, cl, fmt.Sprintf("clone %d", i))
		require.NoError(t, cl.Close())
		<-cl.Done()
	}
	roundTrip(t, c, "first stream again")
	require.NoError(t, c.Close())
	<-c.Done()
	ln.Stop()
}
