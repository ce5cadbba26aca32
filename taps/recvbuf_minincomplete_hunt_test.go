package taps

import (
	"bytes"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMinIncompleteLengthAboveTheReceiveBuffer: on a byte stream without a
// framer, a Receive whose MinIncompleteLength is above the receive buffer
// (WithReceiveBuffer) gets the buffer's worth as a ReceivedPartial: the
// connection stops reading once the buffer is full, so waiting for more
// would wait for ever though the peer's data is there. Every byte arrives
// once, in order, the last part of the stream with its end.
func TestMinIncompleteLengthAboveTheReceiveBuffer(t *testing.T) {
	const limit, total = 64 << 10, 600 << 10
	for _, async := range []bool{false, true} {
		t.Run(map[bool]string{false: "Receive", true: "ReceiveAsync"}[async], func(t *testing.T) {
			sys := newTestSystem(t)
			ctx := testCtx(t)
			ln, r := rawListener(t)
			c, err := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r), WithProtocols("tcp"),
				WithReceiveBuffer(limit)).Initiate(ctx)
			require.NoError(t, err)
			t.Cleanup(func() { c.Abort(); <-c.Done() })
			p, err := ln.Accept()
			require.NoError(t, err)
			defer p.Close()
			want := pattern(total, 3)
			wrote := make(chan error, 1)
			go func() {
				_, err := p.Write(want)
				if err == nil {
					err = p.(*net.TCPConn).CloseWrite()
				}
				wrote <- err
			}()
			recv := func() (*Message, error) {
				if !async {
					return c.Receive(ctx, MinIncompleteLength(4*limit))
				}
				type res struct {
					m   *Message
					err error
				}
				ch := make(chan res, 1)
				c.ReceiveAsync(func(_ *Connection, m *Message, err error) { ch <- res{m, err} }, MinIncompleteLength(4*limit))
				select {
				case x := <-ch:
					return x.m, x.err
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			var got []byte
			for len(got) < total {
				m, err := recv()
				require.NoError(t, err, "after %d bytes", len(got))
				got = append(got, m.Data...)
				if len(got) < total {
					require.False(t, m.EndOfMessage)
					require.GreaterOrEqual(t, len(m.Data), limit, "a part before the end holds the full buffer")
				}
			}
			require.True(t, bytes.Equal(want, got))
			require.NoError(t, <-wrote)
		})
	}
}

// TestFramerPartsOfAMessageAboveTheReceiveBuffer: a user framer that
// delivers a message in parts as its bytes arrive (newStreamingFramer),
// and a message larger than the receive buffer: the connection stops
// reading once the buffer holds the buffer's worth of the message, so a
// Receive for complete messages only (the default), or one whose
// MinIncompleteLength is above the buffer, gets that much as a
// ReceivedPartial (RFC 9622 §9.3.2.2: the message is larger than the
// buffers available) instead of waiting for ever. The message arrives
// whole across its parts, the last with EndOfMessage, and the next
// message whole.
func TestFramerPartsOfAMessageAboveTheReceiveBuffer(t *testing.T) {
	const limit, total = 64 << 10, 600 << 10
	for _, tc := range []struct {
		name string
		opts []ReceiveOption
	}{{"complete messages only", nil}, {"MinIncompleteLength above the buffer", []ReceiveOption{MinIncompleteLength(4 * limit)}}} {
		t.Run(tc.name, func(t *testing.T) {
			sys := newTestSystem(t)
			ctx := testCtx(t)
			ln, r := rawListener(t)
			pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r), WithProtocols("tcp"), WithReceiveBuffer(limit))
			pre.AddFramer(newStreamingFramer())
			c, err := pre.Initiate(ctx)
			require.NoError(t, err)
			t.Cleanup(func() { c.Abort(); <-c.Done() })
			p, err := ln.Accept()
			require.NoError(t, err)
			defer p.Close()
			want := pattern(total, 5)
			wrote := make(chan error, 1)
			go func() {
				_, err := p.Write(append(frame(string(want)), frame("next")...))
				wrote <- err
			}()
			var got []byte
			for {
				m, err := c.Receive(ctx, tc.opts...)
				require.NoError(t, err, "after %d bytes", len(got))
				got = append(got, m.Data...)
				if m.EndOfMessage {
					break
				}
				require.GreaterOrEqual(t, len(m.Data), limit/2, "a part before the end holds much of the buffer")
			}
			require.True(t, bytes.Equal(want, got), "the message whole across its parts (%d of %d bytes)", len(got), total)
			m, err := c.Receive(ctx, tc.opts...)
			require.NoError(t, err)
			require.Equal(t, "next", string(m.Data))
			require.True(t, m.EndOfMessage)
			require.NoError(t, <-wrote)
		})
	}
}
