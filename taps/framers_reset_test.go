package taps

import (
	"encoding/binary"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// A peer's reset (TCP RST) in the middle of a message is not an end of
// stream: what the framer holds of the cut message is never delivered as a
// complete Message. The connection fails with a ConnectionError that
// unwraps both to the reset (as for an unframed stream) and to
// framers.ErrTruncated (as for a length-prefixed message cut by the
// stream's end), and the pending Receive gets a ReceiveError. A clean FIN
// after an unterminated last line still delivers that line as the final
// message (framers.Delimiter's documented behaviour).

// resetFramerCase is one framer stack and the wire bytes of a whole
// message "first" followed by the start of a message "abc..." that never
// ends.
type resetFramerCase struct {
	name    string
	fs      func() []framers.Framer
	wire    []byte
	finRest string // what a FIN (not a reset) delivers of the rest; "" when it is ErrTruncated
}

func resetFramerCases() []resetFramerCase {
	lp := func(body string, announced int) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(announced)), body...)
	}
	return []resetFramerCase{
		{"lines", func() []framers.Framer { return []framers.Framer{framers.NewLines()} },
			[]byte("first\nabc"), "abc"},
		{"delimiter", func() []framers.Framer { return []framers.Framer{framers.NewDelimiter([]byte("\r\n"))} },
			[]byte("first\r\nabc\r"), "abc\r"},
		// the reset reaches the upper framer through the lower one, which
		// holds nothing of a message
		{"lines-over-length-prefix", func() []framers.Framer {
			return []framers.Framer{framers.NewLengthPrefix(), framers.NewLines()}
		}, lp("first\nabc", 9), "abc"},
		{"length-prefix", func() []framers.Framer { return []framers.Framer{framers.NewLengthPrefix()} },
			append(lp("first", 5), lp("abc", 10)...), ""},
	}
}

// receiveFirstThenCut connects c to a raw TCP peer, writes tc.wire in one
// write and receives "first": the read that brought it brought the rest,
// which the framer now holds.
func receiveFirstThenCut(t *testing.T, tc resetFramerCase) (*Connection, *net.TCPConn) {
	t.Helper()
	sys := newTestSystem(t)
	c, peer := rawPeer(t, sys, tc.fs()...)
	t.Cleanup(c.Abort)
	_, err := peer.Write(tc.wire)
	require.NoError(t, err)
	m, err := c.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "first", string(m.Data))
	require.True(t, m.EndOfMessage)
	return c, peer.(*net.TCPConn)
}

func TestFramersPeerResetMidMessageIsNotAMessage(t *testing.T) {
	for _, tc := range resetFramerCases() {
		t.Run(tc.name, func(t *testing.T) {
			c, peer := receiveFirstThenCut(t, tc)
			require.NoError(t, peer.SetLinger(0))
			require.NoError(t, peer.Close()) // RST
			m, err := c.Receive(testCtx(t))
			require.Error(t, err, "the message the reset cut was delivered as complete: %q (end of message %v)",
				func() string {
					if m == nil {
						return ""
					}
					return string(m.Data)
				}(), m != nil && m.EndOfMessage)
			var re *ReceiveError
			require.ErrorAs(t, err, &re)
			awaitDone(t, c, "the reset connection")
			var ce *ConnectionError
			require.ErrorAs(t, c.Err(), &ce)
			require.ErrorIs(t, c.Err(), syscall.ECONNRESET, "the reset is the cause")
			require.ErrorIs(t, c.Err(), framers.ErrTruncated, "a message was cut")
			require.Equal(t, ReasonDeframingFailed, ce.Reason)
		})
	}
}

// The same bytes ended by the peer's FIN: an unterminated last line is the
// final message; a cut length-prefixed message is ErrTruncated.
func TestFramersPeerFINAfterUnterminatedMessage(t *testing.T) {
	for _, tc := range resetFramerCases() {
		t.Run(tc.name, func(t *testing.T) {
			c, peer := receiveFirstThenCut(t, tc)
			require.NoError(t, peer.CloseWrite()) // FIN
			m, err := c.Receive(testCtx(t))
			if tc.finRest == "" {
				var re *ReceiveError
				require.ErrorAs(t, err, &re)
				require.ErrorIs(t, err, framers.ErrTruncated)
				require.NotErrorIs(t, err, syscall.ECONNRESET)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.finRest, string(m.Data))
			require.True(t, m.EndOfMessage)
			_, err = c.Receive(testCtx(t))
			require.ErrorIs(t, err, ErrClosed)
			require.NoError(t, c.Close())
			awaitDone(t, c, "the closed connection")
			require.NoError(t, c.Err())
		})
	}
}

// A TLS stream cut by a TCP FIN without close_notify is no clean end
// either (ErrTLSTruncated): an unterminated last line is a cut message,
// not a final line, unless SetTruncationAllowed takes that FIN for a
// clean end.
func TestFramersTLSTruncationMidLineIsNotAMessage(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("allowed=%v", allow), func(t *testing.T) {
			sys := newTestSystem(t)
			pki := newTestPKI(t)
			port, done := rawTLSServer(t, pki, []byte("first\nabc"), tlsEndTruncate, 0)
			pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.clientSec().SetTruncationAllowed(allow)),
				WithTransportProperties(tlsOnlyProps(t)),
				WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(port)))
			pre.AddFramer(framers.NewLines())
			c, err := pre.Initiate(testCtx(t))
			require.NoError(t, err)
			t.Cleanup(c.Abort)
			m, err := c.Receive(testCtx(t))
			require.NoError(t, err)
			require.Equal(t, "first", string(m.Data))
			m, err = c.Receive(testCtx(t))
			if allow {
				require.NoError(t, err)
				require.Equal(t, "abc", string(m.Data), "a clean end: the unterminated last line is the final message")
				require.True(t, m.EndOfMessage)
				require.NoError(t, c.Close()) // the peer reads until this side's end
				awaitDone(t, c, "the closed connection")
				require.NoError(t, c.Err())
			} else {
				require.Error(t, err, "the line the truncation cut was delivered: %q", func() string {
					if m == nil {
						return ""
					}
					return string(m.Data)
				}())
				var re *ReceiveError
				require.ErrorAs(t, err, &re)
				awaitDone(t, c, "the truncated connection")
				var ce *ConnectionError
				require.ErrorAs(t, c.Err(), &ce)
				require.ErrorIs(t, c.Err(), stacks.ErrTLSTruncated)
				require.ErrorIs(t, c.Err(), framers.ErrTruncated)
			}
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-testCtx(t).Done():
				require.FailNow(t, "the TLS peer never saw this side's end")
			}
		})
	}
}
