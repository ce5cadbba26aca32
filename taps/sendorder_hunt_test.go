package taps

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSendOrderedMessagesKeepSubmissionOrder: msgPriority reorders only
// Messages whose msgOrdered is false (RFC 9622 §9.1.3.3: "The order in
// which Messages were submitted for transmission via the Send Action will
// be preserved on delivery via Receive events for all Messages on a
// Connection that have this Message Property set to true"). The Messages
// of one Batch, queued together: with msgOrdered true (the default on a
// byte stream) they arrive in the order sent whatever their priorities; an
// unordered one among them goes ahead by its priority, and the ordered
// ones still keep their order.
func TestSendOrderedMessagesKeepSubmissionOrder(t *testing.T) {
	type msg struct {
		data    string
		prio    int
		ordered bool
	}
	for _, kind := range []string{"tcp+lp", "tls+lp", "quic"} {
		for _, tt := range []struct {
			name string
			msgs []msg
			want []string
		}{
			{"default", []msg{{"0", 200, true}, {"1", 150, true}, {"2", 10, true}, {"3", 1, true}}, []string{"0", "1", "2", "3"}},
			{"mixed", []msg{{"0", 200, true}, {"1", 150, true}, {"u", 1, false}, {"2", 10, true}}, []string{"u", "0", "1", "2"}},
		} {
			t.Run(kind+"/"+tt.name, func(t *testing.T) {
				sys := newTestSystem(t)
				c, s := sendFixPair(t, sys, kind)
				ctx := testCtx(t)
				done := make(chan error, len(tt.msgs))
				c.Batch(func() { // one actor message: the messages queue together
					for _, m := range tt.msgs {
						mc := NewMessageContext().Priority(m.prio)
						if !m.ordered {
							mc.Ordered(false)
						} else if tt.name == "default" && m.data == "0" {
							mc.Ordered(true) // as the default: explicit or not, the same
						}
						c.SendAsync([]byte(m.data), mc, func(_ *Connection, err error) { done <- err })
					}
				})
				for range tt.msgs {
					require.NoError(t, <-done)
				}
				var got []string
				for range tt.msgs {
					m, err := s.Receive(ctx)
					require.NoError(t, err)
					got = append(got, string(m.Data))
				}
				require.Equal(t, tt.want, got, fmt.Sprintf("%s: msgPriority reordered ordered messages", kind))
			})
		}
	}
}
