package actors

import (
	"context"
	"encoding/binary"
	"io"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// TestLifetimeExpiresWhileQueued: a message whose msgLifetime passes while
// it waits behind a blocked write is Expired, not sent; the others are sent
// (RFC 9622 §9.1.3.1). Fake time: the 200 ms pass instantly and exactly.
func TestLifetimeExpiresWhileQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sys := NewSystem(Config{})
		defer shutdown(t, sys)
		addr := netip.MustParseAddrPort("127.0.0.1:9")
		fs := newFakeStack(map[netip.AddrPort]outcome{addr: {kind: "ok"}})
		cfg := &messages.ConnectionConfig{Remotes: endpoints(addr), Stacks: []stacks.Stack{fs},
			Framers: []framers.Framer{framers.NewLengthPrefix()}}
		link := NewLink(sys.NewID(), 0, 0, false)
		res, err := Ask(context.Background(), sys, sys.Root, &InitiateConnection{Config: cfg, Link: link})
		require.NoError(t, err)
		conn := res.(*ConnectionStarted).Conn
		<-link.Ready()
		require.NoError(t, link.EstablishmentErr())

		results := map[string]chan error{}
		send := func(name string, lifetime time.Duration) {
			id := sys.NewID()
			ch := make(chan error, 1)
			results[name] = ch
			require.True(t, link.ExpectSend(id, func(err error) { ch <- err }))
			sys.AS.Root.Send(conn, &messages.SendMessage{SendID: id, MessageID: id, Data: []byte(name),
				EndOfMessage: true, Queued: time.Now(),
				Props: &messages.MessageProps{Lifetime: lifetime, Priority: 100, Reliable: true, ChecksumLen: -1}})
		}
		send("first", 0) // nobody reads the pipe yet: its write blocks
		synctest.Wait()
		send("short", 100*time.Millisecond)
		send("long", 10*time.Second)
		time.Sleep(200 * time.Millisecond) // fake time
		synctest.Wait()

		peer := fs.transport(addr).peer
		go func() { // the peer starts reading: the blocked write completes
			var got []string
			for len(got) < 2 {
				var h [4]byte
				if _, err := io.ReadFull(peer, h[:]); err != nil {
					return
				}
				b := make([]byte, binary.BigEndian.Uint32(h[:]))
				if _, err := io.ReadFull(peer, b); err != nil {
					return
				}
				got = append(got, string(b))
			}
		}()
		require.NoError(t, <-results["first"])
		require.ErrorIs(t, <-results["short"], ErrExpired)
		require.NoError(t, <-results["long"])
		sys.AS.Root.Send(conn, &messages.AbortConnection{})
		<-link.Done()
	})
}
