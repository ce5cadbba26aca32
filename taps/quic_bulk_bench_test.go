package taps

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/gotaps/gotaps/framers"
	"github.com/quic-go/quic-go"
)

// BenchmarkQUICBulk sends 64 KiB length-prefixed messages one way on one
// QUIC stream (tapsbench W11 bulk): raw quic-go (one Write of header and
// payload per message, a reader through a 64 KiB bufio.Reader into one
// reused buffer) and gotaps (one blocking Send per message, a Receive and
// Release per message), each side with its own kind of peer, and the two
// mixed pairs that isolate the send (gotaps to raw) and receive (raw to
// gotaps) paths.
func BenchmarkQUICBulk(b *testing.B) {
	for _, c := range []struct {
		name       string
		tapsSender bool
		tapsRecv   bool
	}{
		{"raw", false, false},
		{"gotaps", true, true},
		{"send", true, false},
		{"recv", false, true},
	} {
		b.Run(c.name, func(b *testing.B) { benchQUICBulk(b, c.tapsSender, c.tapsRecv) })
	}
}

func benchQUICBulk(b *testing.B, tapsSender, tapsRecv bool) {
	const size = 64 << 10
	ctx := context.Background()
	sys := NewSystem()
	defer sys.Shutdown(ctx)
	pki := newTestPKI(b)
	var got atomic.Int64
	done := make(chan struct{})
	want := int64(b.N) * size
	count := func(n int) {
		if got.Add(int64(n)) == want {
			close(done)
		}
	}
	// receiver
	var port uint16
	var stats []func() quic.ConnectionStats // of the raw ends, for packets/op
	rx := make(chan func() quic.ConnectionStats, 1)
	if tapsRecv {
		tp := NewTransportProperties()
		_ = tp.Require(Multistreaming)
		pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()), WithTransportProperties(tp),
			WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
		pre.AddFramer(framers.NewLengthPrefix())
		ln, err := pre.Listen(ctx)
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Stop()
		ap, _ := ln.LocalEndpoints()[0].Addr()
		port = ap.Port()
		go func() {
			s, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			defer func() { s.Abort(); <-s.Done() }()
			for {
				m, err := s.Receive(ctx)
				if err != nil {
					return
				}
				n := len(m.Data)
				m.Release()
				count(n)
				if got.Load() >= want {
					return
				}
			}
		}()
	} else {
		ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pki.server}, NextProtos: []string{"gotaps-test"}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		port = uint16(ln.Addr().(*net.UDPAddr).Port)
		go func() {
			c, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			defer c.CloseWithError(0, "")
			rx <- c.ConnectionStats
			str, err := c.AcceptStream(ctx)
			if err != nil {
				return
			}
			r := bufio.NewReaderSize(str, 64<<10)
			hdr, buf := make([]byte, 4), make([]byte, size)
			for got.Load() < want {
				if _, err := io.ReadFull(r, hdr); err != nil {
					return
				}
				n := int(binary.BigEndian.Uint32(hdr))
				if _, err := io.ReadFull(r, buf[:n]); err != nil {
					return
				}
				count(n)
			}
		}()
	}
	// sender
	var send func() error
	if tapsSender {
		tp := NewTransportProperties()
		_ = tp.Require(Multistreaming)
		pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.clientSec()), WithTransportProperties(tp),
			WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(port)))
		pre.AddFramer(framers.NewLengthPrefix())
		c, err := pre.Initiate(ctx)
		if err != nil {
			b.Fatal(err)
		}
		defer func() { c.Abort(); <-c.Done() }()
		payload := make([]byte, size)
		send = func() error { return c.Send(ctx, payload, nil) }
	} else {
		conf := &tls.Config{RootCAs: pki.pool, NextProtos: []string{"gotaps-test"}, ServerName: "127.0.0.1"}
		c, err := quic.DialAddr(ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))), conf, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer c.CloseWithError(0, "")
		str, err := c.OpenStreamSync(ctx)
		if err != nil {
			b.Fatal(err)
		}
		stats = append(stats, c.ConnectionStats)
		msg := make([]byte, 4+size)
		binary.BigEndian.PutUint32(msg, size)
		send = func() error { _, err := str.Write(msg); return err }
	}
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := send(); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	b.StopTimer()
	if !tapsRecv {
		stats = append(stats, <-rx)
	}
	for _, st := range stats {
		s := st()
		if s.PacketsSent > s.PacketsReceived { // the sending end
			b.ReportMetric(float64(s.PacketsSent)/float64(b.N), "tx-pkts/op")
			b.ReportMetric(float64(s.PacketsLost)/float64(b.N), "lost-pkts/op")
		} else {
			b.ReportMetric(float64(s.PacketsReceived)/float64(b.N), "rx-pkts/op")
		}
	}
}
