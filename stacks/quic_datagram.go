package stacks

import (
	"errors"
	"fmt"

	"github.com/quic-go/quic-go"
)

// QUIC datagrams (RFC 9221) carry the messages a connection may deliver
// unreliably (msgReliable=false, perMsgReliability): see DatagramSupport.

// ErrDatagramsNotNegotiated: the peer did not enable QUIC datagrams (or
// this side did not: Options.QUICDatagrams), so SendDatagram cannot send.
var ErrDatagramsNotNegotiated = errors.New("QUIC datagrams not negotiated with the peer")

// ErrDatagramTooLarge: the message does not fit one QUIC DATAGRAM frame
// (one packet); the error wrapping it tells the maximum.
var ErrDatagramTooLarge = errors.New("message too large for a QUIC datagram")

// DatagramSupport is implemented by the Transports that implement
// Datagrams: DatagramsNegotiated tells whether both ends enabled them.
type DatagramSupport interface {
	DatagramsNegotiated() bool
}

// DatagramsNegotiated is true when both ends enabled QUIC datagrams.
func (s *quicDatagramStream) DatagramsNegotiated() bool {
	st := s.c.conn.ConnectionState()
	return st.SupportsDatagrams.Local && st.SupportsDatagrams.Remote
}

// sendDatagram sends p as one DATAGRAM frame; it fails with
// ErrDatagramsNotNegotiated or (wrapped, with the maximum) ErrDatagramTooLarge.
func (s *quicDatagramStream) sendDatagram(p []byte) error {
	if !s.DatagramsNegotiated() {
		return ErrDatagramsNotNegotiated
	}
	err := s.c.conn.SendDatagram(p)
	var tl *quic.DatagramTooLargeError
	if errors.As(err, &tl) {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrDatagramTooLarge, len(p), tl.MaxDatagramPayloadSize)
	}
	return err
}

// EarlyReader is implemented by Transports that can tell early data (0-RTT)
// from the rest: QUIC streams. ReadEarly is Read that also reports whether
// the bytes it returned arrived before the handshake completed; a true is
// always right, a false may be early data read after the handshake
// completed. TCP and TLS have none to report (crypto/tls accepts no
// 0-RTT on a server).
type EarlyReader interface {
	ReadEarly(p []byte) (n int, early bool, err error)
}
