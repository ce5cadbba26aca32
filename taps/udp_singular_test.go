package taps

import (
	"net"
	"testing"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// TestUDPSingularMsgMaxLenLeavesRoomForTheFramer: on a framed UDP
// Connection singularTransmissionMsgMaxLen is the largest Message that
// leaves in one packet once framed, as sendMsgMaxLen is the largest that
// fits one datagram (RFC 9622 §8.1.11.1: at most sendMsgMaxLen). It was
// the socket's bare figure: on loopback 65507, above sendMsgMaxLen
// (65503 with a 4-byte length prefix). And noSegmentation, which every
// framed Message on UDP honours (one datagram each, sent with DF), was a
// SendError ("a byte stream the transport segments").
func TestUDPSingularMsgMaxLenLeavesRoomForTheFramer(t *testing.T) {
	sys := newTestSystem(t)
	pc := rawUDP(t)
	c := udpClientWith(t, sys, pc, framers.NewLengthPrefix())
	bare := udpClientTo(t, sys, pc, datagramProps(t)).GetProperties()
	p := c.GetProperties()
	v, ok := p.Get(SingularTransmissionMsgMaxLen)
	require.True(t, ok)
	singular := v.(int64)
	w, _ := bare.Get(SingularTransmissionMsgMaxLen)
	require.Equal(t, w.(int64)-4, singular, "the bare socket's less the framer's 4 bytes")
	send, _ := p.Get(SendMsgMaxLen)
	require.LessOrEqual(t, singular, send.(int64))
	require.NoError(t, c.Send(testCtx(t), make([]byte, singular), NewMessageContext().NoSegmentation(true)),
		"a Message of singularTransmissionMsgMaxLen bytes goes in one packet")
	require.Len(t, readDatagram(t, pc), int(singular)+4)
}

// TestUDPReceiveOnlySingularMsgMaxLenNotApplicable: a Connection that
// cannot send (direction UnidirectionalReceive, a multicast Listener's)
// has sendMsgMaxLen 0 and singularTransmissionMsgMaxLen NotApplicable:
// it read the path MTU back, a size it can never send.
func TestUDPReceiveOnlySingularMsgMaxLenNotApplicable(t *testing.T) {
	sys := newTestSystem(t)
	pc := rawUDP(t)
	tp := datagramProps(t)
	require.NoError(t, tp.Set(Direction, UnidirectionalReceive))
	c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
		WithRemoteEndpoint(loopbackRemote(pc.LocalAddr().(*net.UDPAddr).AddrPort()))).Initiate(testCtx(t))
	require.NoError(t, err)
	defer func() { c.Abort(); <-c.Done() }()
	p := c.GetProperties()
	send, _ := p.Get(SendMsgMaxLen)
	require.Equal(t, int64(0), send)
	v, ok := p.Get(SingularTransmissionMsgMaxLen)
	require.True(t, ok)
	require.Equal(t, NotApplicable, v)
	recv, _ := p.Get(RecvMsgMaxLen)
	require.Equal(t, int64(65507), recv)
}
