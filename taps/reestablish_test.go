package taps

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

func TestLongLivedGroupIsReestablishedWithBackoff(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	serverAt := func(port uint16) (*Listener, func()) {
		pre := NewPreconnection(WithSystem(sys), WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(port)))
		pre.AddFramer(framers.NewLengthPrefix())
		ln, err := pre.Listen(ctx)
		require.NoError(t, err)
		var mu sync.Mutex
		var accepted []*Connection
		go func() {
			for {
				s, err := ln.Accept(ctx)
				if err != nil {
					return
				}
				mu.Lock()
				accepted = append(accepted, s)
				mu.Unlock()
				go func() {
					for {
						m, err := s.Receive(ctx)
						if err != nil || s.Send(ctx, m.Data, nil) != nil {
							return
						}
					}
				}()
			}
		}()
		goAway := func() { // the peer goes away: listener and connections
			ln.Stop()
			<-ln.Done()
			mu.Lock()
			defer mu.Unlock()
			for _, s := range accepted {
				s.Abort()
				<-s.Done()
			}
		}
		return ln, goAway
	}
	ln, goAway := serverAt(0)
	ap, _ := ln.LocalEndpoints()[0].Addr()

	pre := NewPreconnection(WithSystem(sys),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(ap.Port())),
		WithReestablishment(ReestablishPolicy{Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond, MaxAttempts: 100}))
	pre.AddFramer(framers.NewLengthPrefix())
	c, err := pre.Initiate(ctx)
	require.NoError(t, err)
	clone, err := c.Clone(ctx)
	require.NoError(t, err)

	type event struct {
		conn     uint64
		kind     string
		attempts int
	}
	events := make(chan event, 1000)
	for _, conn := range []*Connection{c, clone} {
		conn.OnReestablishing(func(c *Connection, err error, attempt int) {
			require.Error(t, err)
			events <- event{c.ID(), "reestablishing", attempt}
		})
		conn.OnReestablished(func(c *Connection, attempts int) { events <- event{c.ID(), "reestablished", attempts} })
	}
	echo := func(conn *Connection, text string) {
		require.NoError(t, conn.Send(ctx, []byte(text), nil))
		m, err := conn.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, text, string(m.Data))
	}
	echo(c, "before")
	echo(clone, "before too")

	goAway()
	// both members lose their transport and keep retrying (refused) with backoff
	retries := map[uint64]int{}
	for retries[c.ID()] < 3 || retries[clone.ID()] < 3 {
		ev := <-events
		require.Equal(t, "reestablishing", ev.kind)
		retries[ev.conn] = ev.attempts
	}
	require.Equal(t, StateEstablishing, c.State(), "a member re-establishing is Establishing")

	// the peer comes back on the same port: both are re-established
	_, goAway2 := serverAt(ap.Port())
	back := map[uint64]bool{}
	for !back[c.ID()] || !back[clone.ID()] {
		ev := <-events
		if ev.kind == "reestablished" {
			require.Greater(t, ev.attempts, 2)
			back[ev.conn] = true
		}
	}
	require.Equal(t, StateEstablished, c.State())
	echo(c, "after")
	echo(clone, "after too")
	group, err := c.GroupedConnections(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, []*Connection{c, clone}, group, "re-established members keep their place in the group")

	c.CloseGroup()
	<-c.Done()
	<-clone.Done()
	goAway2()
}

func TestReestablishmentGivesUpAfterMaxAttempts(t *testing.T) {
	sys := newTestSystem(t)
	ln, r := rawListener(t)
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r),
		WithReestablishment(ReestablishPolicy{Initial: time.Millisecond, Max: 2 * time.Millisecond, MaxAttempts: 3}))
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	peer, err := ln.Accept()
	require.NoError(t, err)
	ln.Close()
	peer.Close()
	<-c.Done()
	var ce *ConnectionError
	require.ErrorAs(t, c.Err(), &ce, "giving up on a connection that was Ready is a ConnectionError")
}

// A peer that resets every connection as soon as it is used: the row of
// attempts goes on through the successful ones (their transports are not
// up StableAfter), so the connection ends after MaxAttempts instead of
// cycling at the Initial wait for ever. The Preconnection's handlers are
// in place from the start.
func TestReestablishmentPeerThatResetsAtOnceEnds(t *testing.T) {
	sys := newTestSystem(t)
	ln, r := rawListener(t)
	go func() {
		for {
			peer, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { // reset once the client writes: its connect completed
				_, _ = peer.Read(make([]byte, 1))
				_ = peer.(*net.TCPConn).SetLinger(0)
				peer.Close()
			}()
		}
	}()
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r),
		WithReestablishment(ReestablishPolicy{Initial: time.Millisecond, Max: 4 * time.Millisecond, MaxAttempts: 3,
			StableAfter: time.Minute}))
	events := make(chan string, 64)
	pre.OnReestablishing(func(_ *Connection, _ error, n int) { events <- fmt.Sprint("lost ", n) })
	pre.OnReestablished(func(_ *Connection, n int) { events <- fmt.Sprint("up ", n) })
	pre.OnConnectionError(func(_ *Connection, err error) { events <- fmt.Sprint("error ", errors.As(err, new(*ConnectionError))) })
	ctx := testCtx(t)
	c, err := pre.Initiate(ctx)
	require.NoError(t, err)
	var got []string
	for n := 1; n <= 4; n++ {
		require.NoError(t, c.Send(ctx, []byte("go"), nil))
		want := []string{fmt.Sprint("lost ", n), fmt.Sprint("up ", n)}
		if n == 4 {
			want = []string{"error true"}
		}
		for range want {
			select {
			case e := <-events:
				got = append(got, e)
			case <-ctx.Done():
				t.Fatalf("events so far: %v", got)
			}
		}
		require.Equal(t, want, got[len(got)-len(want):], "events so far: %v", got)
	}
}
