package taps

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestInitiateCtxEndingAtReadyKeepsTheReadyConnection: an Initiate or a
// Clone whose ctx ends as the connection becomes Ready (deadlines swept
// across the handshake, over TCP and TLS) either returns the connection or
// fails with no Ready event reported for it: a connection whose Ready
// reached a handler is never aborted by the ctx and dropped with an
// EstablishmentError (its Preconnection's handlers then saw Ready and a
// ConnectionError of a Connection the application never had).
func TestInitiateCtxEndingAtReadyKeepsTheReadyConnection(t *testing.T) {
	sys := newTestSystem(t)
	for _, s := range lifecycleSetups(t, sys)[:2] { // tcp, tls
		go func() {
			for {
				p, err := s.ln.Accept(context.Background())
				if err != nil {
					return
				}
				_ = p.Close()
			}
		}()
		var readies atomic.Pointer[atomic.Int32]
		s.pre.OnReady(func(*Connection) {
			if r := readies.Load(); r != nil {
				r.Add(1)
			}
		})
		// the deadlines go from a quarter of the fastest handshake of a
		// few to past one and a half of it
		orig, err := s.pre.Initiate(testCtx(t))
		require.NoError(t, err)
		d := time.Hour
		for range 5 {
			start := time.Now()
			c, err := s.pre.Initiate(testCtx(t))
			require.NoError(t, err)
			d = min(d, time.Since(start))
			c.Abort()
			<-c.Done()
		}
		ok, failed, bad := 0, 0, 0
		try := func(i int, establish func(context.Context) (*Connection, error)) {
			r := new(atomic.Int32)
			readies.Store(r)
			ctx, cancel := context.WithTimeout(context.Background(), d/4+time.Duration(i%60)*d/40)
			c, err := establish(ctx)
			cancel()
			if err == nil {
				ok++
				require.Equal(t, StateEstablished, c.State(), s.name)
				c.Abort()
				<-c.Done()
				return
			}
			failed++
			// the failed connection is Done: a Ready handler it had has run
			if n := r.Load(); n > 0 {
				bad++
				t.Logf("%s: failed with %v after %d Ready events", s.name, err, n)
			}
		}
		for i := range 200 {
			try(i, s.pre.Initiate)
		}
		// a Clone's Ready goes to the Preconnection's handler too
		for i := range 100 {
			try(i, func(ctx context.Context) (*Connection, error) { return orig.Clone(ctx) })
		}
		orig.Abort()
		<-orig.Done()
		t.Logf("%s: %d established, %d failed (handshake %v)", s.name, ok, failed, d)
		require.Zero(t, bad, "%s: establishments failed after their Ready event", s.name)
	}
}

// lifecycleSetup is a Listener and a Preconnection that reaches it.
type lifecycleSetup struct {
	name string
	ln   *Listener
	pre  *Preconnection
}

func lifecycleSetups(t *testing.T, sys *System) []lifecycleSetup {
	tcp, tcpPre := tcpSetup(t, sys)
	tlsLn, tlsPre := secureSetup(t, sys, newTestPKI(t), func() *TransportProperties { return tlsOnlyProps(t) })
	udpLn, err := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))).Listen(testCtx(t))
	require.NoError(t, err)
	uap := listenerAddr(t, udpLn)
	udpPre := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)), WithRemoteEndpoint(loopbackRemote(uap)))
	return []lifecycleSetup{{"tcp", tcp, tcpPre}, {"tls", tlsLn, tlsPre}, {"udp", udpLn, udpPre}}
}
