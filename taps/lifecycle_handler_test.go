package taps

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestEndpointsAndCloneInAHandlerAsTheConnectionEnds: Endpoints and Clone
// called over and over from an event handler (a SendAsync handler) of a
// connection that another goroutine aborts return an error once it has
// ended, promptly: they read the endpoint sets from the connection's
// actor, which answers nothing once it has ended, and waited for the
// connection's Done, which comes after its last handler, so a call made in
// the window between the actor's end and its stop, from a handler, waited
// for its own return (for ever under a ctx that does not end).
func TestEndpointsAndCloneInAHandlerAsTheConnectionEnds(t *testing.T) {
	sys := newTestSystem(t)
	for _, s := range lifecycleSetups(t, sys) {
		go func() {
			for {
				p, err := s.ln.Accept(context.Background())
				if err != nil {
					return
				}
				_ = p.Close()
			}
		}()
		for i := range 80 {
			name := fmt.Sprintf("%s/%d", s.name, i)
			c, err := s.pre.Initiate(testCtx(t))
			require.NoError(t, err, name)
			res := make(chan error, 1)
			c.SendAsync([]byte("m"), nil, func(c *Connection, _ error) {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				for {
					var err error
					if i%2 == 0 {
						_, _, err = c.Endpoints(ctx)
					} else {
						var cl *Connection
						if cl, err = c.Clone(ctx); err == nil {
							cl.Abort()
						}
					}
					if err != nil {
						res <- err
						return
					}
				}
			})
			c.Abort()
			select {
			case err := <-res:
				require.False(t, errors.Is(err, context.DeadlineExceeded), "%s: the call in the handler waited for its ctx: %v", name, err)
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: the handler did not return", name)
			}
			<-c.Done()
		}
	}
}
