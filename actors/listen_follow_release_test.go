package actors

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
)

// selfSignedTLS is a server configuration with a self-signed certificate
// (the test's clients do not verify it).
func selfSignedTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// TestListenerFollowReleasesClosedQUICSockets: a QUIC socket the listener
// closed because its site left the plan (its interface went down) is
// shared with the sessions accepted on it, and closed after the last of
// them. The listener's Released waits for it as for the sockets it closes
// when it stops (the sessions without a Connection left: they end after
// the linger), and SocketsClosed (System.Shutdown) for all of them: the
// port can then be bound at once.
func TestListenerFollowReleasesClosedQUICSockets(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the route monitor is Linux only")
	}
	other := upNonLoopback(t)
	if other == "" {
		t.Skip("needs an interface that is up besides the loopback, to Prohibit it")
	}
	for _, tc := range []struct {
		name string
		// open: the accepted Connection is still open when the listener
		// stops (SocketsClosed waits for it); otherwise it was closed
		// before the site left the plan (Released waits for the linger)
		open bool
	}{{"ClosedConnection", false}, {"OpenConnection", true}} {
		t.Run(tc.name, func(t *testing.T) {
			sys, traces := listenerTraces(t)
			defer shutdown(t, sys)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			srvTLS := selfSignedTLS(t)
			for round := range 10 {
				followQUICRound(t, ctx, sys, traces, other, srvTLS, tc.open, round)
			}
		})
	}
}

func followQUICRound(t *testing.T, ctx context.Context, sys *System, traces <-chan *messages.TraceRecord,
	other string, srvTLS *tls.Config, open bool, round int) {
	t.Helper()
	cfg := &messages.ConnectionConfig{Stacks: []stacks.Stack{stacks.QUIC()},
		StackOptions: stacks.Options{TLS: srvTLS},
		Locals:       []*messages.Endpoint{{IpAddress: "127.0.0.1"}}, Properties: prohibitProps(other)}
	res, err := Ask(ctx, sys, sys.Root, &messages.StartListening{Config: cfg})
	require.NoError(t, err)
	st := res.(*ListenerStarted)
	ap, ok := stacks.AddrPortOf(st.Addrs[0])
	require.True(t, ok)
	port := ap.Port()
	at := func(addr string) string { return net.JoinHostPort(addr, strconv.Itoa(int(port))) }
	replan := scriptedPlan(t, ctx, sys, st.PID)
	replan(loSite("127.0.0.1"), loSite("127.0.0.2"))
	awaitTrace(t, traces, "Listening", at("127.0.0.2")+"%lo")

	// a session on the followed socket, its first stream accepted
	qc, err := quic.DialAddr(ctx, at("127.0.0.2"), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{stacks.DefaultQUICALPN}}, nil)
	require.NoError(t, err)
	defer func() { _ = qc.CloseWithError(0, "") }()
	str, err := qc.OpenStreamSync(ctx)
	require.NoError(t, err)
	_, err = str.Write([]byte("x"))
	require.NoError(t, err)
	require.NoError(t, str.Close()) // FIN: the server's Close need not wait for it
	s, err := st.Queue.Accept(ctx)
	require.NoError(t, err)
	if !open {
		// closed gracefully: the listener keeps the session for the
		// peer's next stream
		sys.AS.Root.Send(s.Conn, &messages.CloseConnection{})
		select {
		case <-s.Link.Done():
		case <-ctx.Done():
			t.Fatal("the accepted connection did not close")
		}
	}

	// the site leaves the plan: its socket is closed (the session
	// without a Connection lingers, the open one goes on)
	replan(loSite("127.0.0.1"))
	awaitTrace(t, traces, "ListenClosed", "127.0.0.2:0%lo")
	require.NoError(t, StopAndWait(ctx, sys, st.PID))
	if open {
		select {
		case <-st.Queue.SocketsClosed():
			t.Fatalf("round %d: SocketsClosed while a session accepted on a socket closed earlier is open", round)
		default:
		}
		sys.AS.Root.Send(s.Conn, &messages.AbortConnection{})
		select {
		case <-s.Link.Done():
		case <-ctx.Done():
			t.Fatal("the accepted connection did not end")
		}
		select {
		case <-st.Queue.SocketsClosed():
		case <-ctx.Done():
			t.Fatal("SocketsClosed never closed")
		}
	} else {
		select {
		case <-st.Queue.Released():
		case <-ctx.Done():
			t.Fatal("Released never closed")
		}
	}
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(at("127.0.0.2"))))
	require.NoError(t, err, "round %d: UDP port %d of 127.0.0.2 still in use", round, port)
	require.NoError(t, pc.Close())
}
