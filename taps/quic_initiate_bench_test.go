package taps

import (
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/gotaps/gotaps/framers"
	"github.com/quic-go/quic-go"
)

// BenchmarkQUICInitiate is one full QUIC handshake (no session
// resumption) to a raw quic-go listener on loopback, up to a usable
// stream (tapsbench W11's handshake): raw quic.DialAddr against gotaps'
// Initiate (which also opens its stream, a local step). The close is not
// timed. The same listener serves both, so the difference is the client.
func BenchmarkQUICInitiate(b *testing.B) {
	pki := newTestPKI(b)
	ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pki.server}, NextProtos: []string{"gotaps-test"}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Go(func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			wg.Go(func() { <-c.Context().Done() })
		}
	})
	port := ln.Addr().(*net.UDPAddr).Port
	ctx := context.Background()
	b.Run("raw", func(b *testing.B) {
		conf := &tls.Config{RootCAs: pki.pool, NextProtos: []string{"gotaps-test"}, ServerName: "127.0.0.1"}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		b.ReportAllocs()
		for b.Loop() {
			c, err := quic.DialAddr(ctx, addr, conf, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			_ = c.CloseWithError(0, "")
			b.StartTimer()
		}
	})
	b.Run("gotaps", func(b *testing.B) {
		sys := NewSystem()
		defer sys.Shutdown(ctx)
		tp := NewTransportProperties()
		_ = tp.Require(Multistreaming)
		_ = tp.Set(IsolateSession, true)
		pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.clientSec()), WithTransportProperties(tp),
			WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(uint16(port))))
		pre.AddFramer(framers.NewLengthPrefix())
		b.ReportAllocs()
		for b.Loop() {
			c, err := pre.Initiate(ctx)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			c.Abort()
			<-c.Done()
			b.StartTimer()
		}
	})
}
