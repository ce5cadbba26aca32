package stacks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"

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

// errDatagramsRequired is the failure of a QUIC Dial with
// Options.RequireDatagrams whose peer did not enable datagrams.
var errDatagramsRequired = fmt.Errorf("perMsgReliability Required: %w (%w)", ErrDatagramsNotNegotiated, errors.ErrUnsupported)

// requiredDatagrams checks a dialed connection whose handshake completed,
// or an accepted one (the client's transport parameters came with its
// first flight): with opts.RequireDatagrams, the peer must have enabled
// datagrams, or it closes conn and fails with errDatagramsRequired.
func requiredDatagrams(conn *quic.Conn, opts Options) error {
	if !opts.RequireDatagrams || conn.ConnectionState().SupportsDatagrams.Remote {
		return nil
	}
	_ = conn.CloseWithError(quicCodeAbort, "QUIC datagrams required")
	return errDatagramsRequired
}

// DatagramSupport is implemented by the Transports that implement
// Datagrams: DatagramsNegotiated tells whether both ends enabled them.
type DatagramSupport interface {
	DatagramsNegotiated() bool
}

// DatagramsNegotiated is true when both ends enabled QUIC datagrams.
func (s *quicDatagramStream) DatagramsNegotiated() bool {
	st := s.c.connectionState() // quic_migrate.go: not raced by a path switch
	return st.SupportsDatagrams.Local && st.SupportsDatagrams.Remote
}

// DatagramTurn is implemented by the Transports that implement Datagrams
// on a session they share with other stream Transports (QUIC): the oldest
// live one reads the session's datagrams (quicDatagramReaders).
// StopReceivingDatagrams gives up this Transport's turn for good, while it
// stays open and may still send them: the next oldest reads them from now
// on (with any this one read but did not return), and its own
// ReceiveDatagram fails with net.ErrClosed. A connection that discards
// what arrives (its Close lingers for the peer's end of stream) calls it,
// so that the session's datagrams go on reaching the members that still
// receive.
type DatagramTurn interface {
	StopReceivingDatagrams()
}

// StopReceivingDatagrams implements DatagramTurn.
func (s *quicDatagramStream) StopReceivingDatagrams() { s.c.dgram.remove(s.quicStream) }

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

// quicDatagramReaders tells which stream Transport of a QUIC connection
// reads the peer's datagrams. Datagrams belong to the connection, not to a
// stream (RFC 9221): every stream Transport of a connection with
// Options.QUICDatagrams may send them, and the oldest live one reads them.
// When it closes (or aborts, or gives up its turn: DatagramTurn), the
// next oldest takes them over, with any
// datagram its predecessor read but did not return, so that the streams
// of a connection group go on receiving unreliable messages. Only while no
// stream Transport is left are they not read (quic-go queues a few, then
// drops them).
type quicDatagramReaders struct {
	mu      sync.Mutex
	readers []*quicStream // the live stream Transports, oldest first: readers[0] reads
	held    [][]byte      // read by a former reader after it lost its turn, for readers[0]
	// turn ends whenever readers[0] or held may have changed: the
	// Transports waiting for their turn look again, and the reader's
	// ReceiveDatagram returns
	turn    context.Context
	endTurn context.CancelFunc
}

// add makes s a reader, the one that reads if it is the only one.
func (d *quicDatagramReaders) add(s *quicStream) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.readers = append(d.readers, s)
	d.changed()
}

// remove drops s, a Transport that closed: the next oldest reads. With
// no reader left, the held datagrams are dropped.
func (d *quicDatagramReaders) remove(s *quicStream) {
	d.mu.Lock()
	defer d.mu.Unlock()
	i := slices.Index(d.readers, s)
	if i < 0 {
		return
	}
	d.readers = slices.Delete(d.readers, i, i+1)
	if len(d.readers) == 0 {
		d.held = nil
	}
	d.changed()
}

// changed ends the current turn and starts the next (with d.mu).
func (d *quicDatagramReaders) changed() {
	if d.endTurn != nil {
		d.endTurn()
	}
	d.turn, d.endTurn = context.WithCancel(context.Background())
}

// receive returns the next datagram of conn for s: at once if s reads
// and one is held, else from quic-go while s reads, waiting for its turn
// meanwhile. It fails with net.ErrClosed once s closed, with ctx's error,
// or with the connection's (quicTimedOut).
func (d *quicDatagramReaders) receive(ctx context.Context, conn *quic.Conn, s *quicStream) ([]byte, error) {
	for {
		d.mu.Lock()
		live := slices.Contains(d.readers, s)
		reads := live && d.readers[0] == s
		turn := d.turn
		if reads && len(d.held) > 0 {
			p := d.held[0]
			d.held[0] = nil
			d.held = d.held[1:]
			d.mu.Unlock()
			return p, nil
		}
		d.mu.Unlock()
		switch {
		case !live:
			return nil, net.ErrClosed
		case !reads:
			select {
			case <-turn.Done():
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-conn.Context().Done():
				return nil, quicTimedOut(context.Cause(conn.Context()))
			}
		}
		rctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(turn, cancel)
		p, err := conn.ReceiveDatagram(rctx)
		stop()
		cancel()
		if err != nil {
			if ctx.Err() == nil && conn.Context().Err() == nil && turn.Err() != nil {
				continue // the turn ended: look again
			}
			return nil, quicTimedOut(err)
		}
		d.mu.Lock()
		if len(d.readers) > 0 && d.readers[0] == s {
			d.mu.Unlock()
			return p, nil
		}
		// s lost its turn while it read p: p is the next reader's
		if len(d.readers) > 0 {
			d.held = append(d.held, p)
			d.changed()
		}
		d.mu.Unlock()
	}
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
