package taps

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// firstSentEvents makes pre report its first messages' events on the
// returned channel.
func firstSentEvents(pre *Preconnection) <-chan error {
	events := make(chan error, 4)
	pre.OnFirstMessageSent(func(_ *Connection, err error) { events <- err })
	return events
}

func TestInitiateWithSendReportsSent(t *testing.T) {
	sys := newTestSystem(t)
	ln, r := rawListener(t)
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r))
	events := firstSentEvents(pre)
	c, err := pre.InitiateWithSend(testCtx(t), []byte("first"), nil)
	require.NoError(t, err)
	t.Cleanup(c.Abort)
	require.NoError(t, <-events, "Sent")
	peer, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { peer.Close() })
	b := make([]byte, 5)
	_, err = peer.Read(b)
	require.NoError(t, err)
	require.Equal(t, "first", string(b))
	require.NoError(t, c.Send(testCtx(t), []byte("more"), nil))
	require.Empty(t, events, "one event, for the first message only")
}

// TestInitiateWithSendReportsSendError: a first message the selected stack
// cannot send is that message's SendError; the connection is Ready and
// stays usable.
func TestInitiateWithSendReportsSendError(t *testing.T) {
	sys := newTestSystem(t)
	ln, r := rawListener(t)
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r), WithProtocols("tcp"))
	events := firstSentEvents(pre)
	c, err := pre.InitiateWithSend(testCtx(t), []byte("unreliable"), NewMessageContext().Reliable(false))
	require.NoError(t, err)
	t.Cleanup(c.Abort)
	err = <-events
	var se *SendError
	require.ErrorAs(t, err, &se)
	require.ErrorIs(t, err, ErrPropertyNotSupported)
	require.NoError(t, c.Send(testCtx(t), []byte("ok"), nil))
	peer, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { peer.Close() })
	b := make([]byte, 2)
	_, err = peer.Read(b)
	require.NoError(t, err)
	require.Equal(t, "ok", string(b), "the refused first message was never written")
}

// TestInitiateWithSendFailedEstablishmentIsTheOnlyEvent: RFC 9622 §9.2.5:
// when establishment fails, the first message gets no event of its own.
func TestInitiateWithSendFailedEstablishmentIsTheOnlyEvent(t *testing.T) {
	sys := newTestSystem(t)
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(remote(refusedAddr(t))))
	events := firstSentEvents(pre)
	estErr := make(chan error, 1)
	pre.OnEstablishmentError(func(_ *Connection, err error) { estErr <- err })
	_, err := pre.InitiateWithSend(testCtx(t), []byte("first"), nil)
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.Error(t, <-estErr)
	// a SendError would have been delivered before the EstablishmentError
	require.Empty(t, events)
}

func TestInitiateWithSendOnReceiveOnlyFails(t *testing.T) {
	sys := newTestSystem(t)
	_, r := rawListener(t)
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r),
		WithTransportProperties(directionProps(t, UnidirectionalReceive)))
	_, err := pre.InitiateWithSend(testCtx(t), []byte("first"), nil)
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.ErrorIs(t, err, ErrReceiveOnly)
}
