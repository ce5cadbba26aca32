package taps

import (
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// A panic in a user framer's callback on the accepting side ends only the
// connection it ran for: that peer's connection ends, and the Listener
// goes on serving the next peer.
func TestListenerFramerPanicEndsOnlyItsConnection(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(h *hookFramer, first func() bool)
		// during: "setup" (never accepted), "receive", "send", "close"
		during string
	}{
		{"Start", func(h *hookFramer, first func() bool) {
			h.start = func(inst *framers.Instance) {
				if first() {
					panic(errHuntBug)
				}
				inst.MakeConnectionReady()
			}
		}, "setup"},
		{"Clone", func(h *hookFramer, first func() bool) {
			h.clone = func() {
				if first() {
					panic(errHuntBug)
				}
			}
		}, "setup"},
		{"MaxBuffered", func(h *hookFramer, first func() bool) {
			h.maxBuf = func() int {
				if first() {
					panic(errHuntBug)
				}
				return framers.DefaultMaxMessageSize + 4
			}
		}, "setup"},
		{"HandleReceivedData", func(h *hookFramer, first func() bool) {
			lp := framers.NewLengthPrefix()
			h.recv = func(inst *framers.Instance) {
				if first() {
					panic(errHuntBug)
				}
				lp.HandleReceivedData(inst)
			}
		}, "receive"},
		{"NewSentMessage", func(h *hookFramer, first func() bool) {
			lp := framers.NewLengthPrefix()
			h.send = func(inst *framers.Instance, data []byte, meta framers.Metadata, eom bool) {
				if first() {
					panic(errHuntBug)
				}
				lp.NewSentMessage(inst, data, meta, eom)
			}
		}, "send"},
		{"Stop", func(h *hookFramer, first func() bool) {
			h.stop = func(inst *framers.Instance) {
				if first() {
					panic(errHuntBug)
				}
				inst.MakeConnectionClosed()
			}
		}, "close"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := newTestSystem(t)
			ctx := testCtx(t)
			var calls atomic.Int32
			h := newHookFramer()
			tc.set(h, func() bool { return calls.Add(1) == 1 })
			// the descriptors open before (the runtime's poller is made by
			// the first socket, which the listener's is when the test runs
			// alone)
			warm, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			warm.Close()
			baseFDs := openFDs(t)
			ln := listenLoopback(t, sys, h)
			defer func() {
				ln.Stop()
				<-ln.Done()
				if !t.Failed() {
					// the failed connection's socket is closed too
					require.Equal(t, baseFDs, openFDs(t), "descriptors left open")
				}
			}()
			addr := listenerAddr(t, ln).String()

			p1, err := net.Dial("tcp", addr)
			if tc.during == "setup" && err != nil {
				// the listener aborted the connection before the dial
				// returned (its framer failed at once): the peer saw it end
				require.ErrorIs(t, err, syscall.ECONNRESET)
			} else {
				require.NoError(t, err)
				defer p1.Close()
				_, err = p1.Write(frame("one"))
				require.True(t, err == nil || tc.during == "setup", "write: %v", err)
				// the first peer's connection ends
				defer func() {
					require.NoError(t, p1.SetReadDeadline(time.Now().Add(5*time.Second)))
					_, err = readFrame(p1)
					require.Error(t, err)
					require.NotErrorIs(t, err, os.ErrDeadlineExceeded, "the first peer's connection was left open")
				}()
			}
			if tc.during != "setup" {
				c, err := ln.Accept(ctx)
				require.NoError(t, err)
				var pe *PanicError
				switch tc.during {
				case "receive":
					_, err = c.Receive(ctx)
					var re *ReceiveError
					require.ErrorAs(t, err, &re)
					require.ErrorAs(t, err, &pe)
				case "send":
					err = c.Send(ctx, []byte("x"), nil)
					var se *SendError
					require.ErrorAs(t, err, &se)
					require.ErrorAs(t, err, &pe)
				case "close":
					require.NoError(t, c.Close())
				}
				awaitDone(t, c, "the first connection")
				require.ErrorAs(t, c.Err(), &pe)
				require.ErrorIs(t, c.Err(), errHuntBug)
			}
			// the next peer is served
			p2, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer p2.Close()
			_, err = p2.Write(frame("two"))
			require.NoError(t, err)
			c, err := ln.Accept(ctx)
			require.NoError(t, err)
			defer func() { c.Abort(); <-c.Done() }()
			m, err := c.Receive(ctx)
			require.NoError(t, err)
			require.Equal(t, "two", string(m.Data))
			require.NoError(t, c.Send(ctx, []byte("back"), nil))
			require.NoError(t, p2.SetReadDeadline(time.Now().Add(5*time.Second)))
			got, err := readFrame(p2)
			require.NoError(t, err)
			require.Equal(t, "back", got)
		})
	}
}
