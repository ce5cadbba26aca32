package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"sync"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/taps"
	"github.com/quic-go/quic-go"
)

// W11 (QUIC handshake and bulk) and W12 (Clone on QUIC and TCP): gotaps
// over its QUIC stack against raw quic-go with the same certificate, ALPN
// and 4-byte length prefix, both over loopback.

const (
	implRawQUIC = "raw-quic"
	implTapsTCP = "gotaps-tcp"
	// quicALPN is the ALPN of both peers: the gotaps QUIC stack's default
	// (stacks.DefaultQUICALPN), so raw and gotaps negotiate the same one.
	quicALPN = "gotaps"
)

// quicPKI is a self-signed ECDSA P-256 certificate for 127.0.0.1 and
// localhost and the pool that trusts it.
type quicPKI struct {
	cert tls.Certificate
	pool *x509.CertPool
}

func newQUICPKI() (*quicPKI, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tapsbench"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &quicPKI{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool: pool}, nil
}

func (k *quicPKI) serverTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{k.cert}, NextProtos: []string{quicALPN}}
}

func (k *quicPKI) clientTLS() *tls.Config {
	return &tls.Config{RootCAs: k.pool, ServerName: "127.0.0.1", NextProtos: []string{quicALPN}}
}

// quicProps requires multistreaming, so that QUIC is the only candidate;
// isolate also sets isolateSession (no TLS session resumption: every
// Initiate is a full handshake, like a raw quic.DialAddr without a
// ClientSessionCache).
func quicProps(isolate bool) *taps.TransportProperties {
	tp := taps.NewTransportProperties()
	if err := tp.Require(taps.Multistreaming); err != nil {
		panic(err) // a known property: cannot fail
	}
	if isolate {
		if err := tp.Set(taps.IsolateSession, true); err != nil {
			panic(err)
		}
	}
	return tp
}

// newGotapsQUICEnv is newGotapsEnv over QUIC: a fresh System with a
// length-prefix Listener on 127.0.0.1 with the certificate as identity;
// every received connection (first stream or clone stream) goes to handle
// on its own goroutine.
func newGotapsQUICEnv(ctx context.Context, pki *quicPKI, handle func(*taps.Connection)) (*gotapsEnv, error) {
	sys := taps.NewSystem()
	e := &gotapsEnv{sys: sys}
	pre := taps.NewPreconnection(taps.WithSystem(sys),
		taps.WithSecurityParameters(taps.NewSecurityParameters().SetIdentity(pki.cert)),
		taps.WithTransportProperties(quicProps(false)),
		taps.WithLocalEndpoint(taps.NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	pre.AddFramer(framers.NewLengthPrefix())
	ln, err := pre.Listen(ctx)
	if err != nil {
		_ = e.close()
		return nil, fmt.Errorf("gotaps QUIC Listen: %w", err)
	}
	ln.OnConnectionReceived(func(_ *taps.Listener, c *taps.Connection) { go handle(c) })
	e.ln = ln
	addr, _ := ln.LocalEndpoints()[0].Addr()
	e.port = addr.Port()
	return e, nil
}

// quicPreconn is a client Preconnection to the env's QUIC listener:
// security required, trusting pki, multistreaming required; isolate: no
// session resumption (see quicProps).
func (e *gotapsEnv) quicPreconn(pki *quicPKI, isolate bool) *taps.Preconnection {
	pre := taps.NewPreconnection(taps.WithSystem(e.sys),
		taps.WithSecurityParameters(taps.NewSecurityParameters().SetTrustedCAs(pki.pool)),
		taps.WithTransportProperties(quicProps(isolate)),
		taps.WithRemoteEndpoint(taps.NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(e.port)))
	pre.AddFramer(framers.NewLengthPrefix())
	return pre
}

// checkQUIC fails unless c runs over the QUIC stack.
func checkQUIC(c *taps.Connection) error {
	if s := c.GetProperties().Stack; s != "quic" {
		return fmt.Errorf("selected stack %q, want quic", s)
	}
	return nil
}

// --- raw quic-go peer ---

// rawQUICServer accepts QUIC connections on 127.0.0.1 and runs handle on a
// goroutine per stream the peer opens; the stream is closed after it.
type rawQUICServer struct {
	ln    *quic.Listener
	addr  string
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[*quic.Conn]struct{}
}

func newRawQUICServer(pki *quicPKI, handle func(*quic.Stream)) (*rawQUICServer, error) {
	// Allow0RTT as the gotaps QUIC stack sets it (resumed dials only)
	ln, err := quic.ListenAddr("127.0.0.1:0", pki.serverTLS(), &quic.Config{Allow0RTT: true})
	if err != nil {
		return nil, err
	}
	s := &rawQUICServer{ln: ln, addr: ln.Addr().String(), conns: map[*quic.Conn]struct{}{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
				}()
				for {
					str, err := c.AcceptStream(c.Context())
					if err != nil {
						return
					}
					s.wg.Add(1)
					go func() {
						defer s.wg.Done()
						handle(str)
						str.Close()
						str.CancelRead(0)
					}()
				}
			}()
		}
	}()
	return s, nil
}

func (s *rawQUICServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.CloseWithError(0, "")
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// rawQUICSink counts the payload bytes of length-prefixed messages.
func rawQUICSink(s **sink) func(*quic.Stream) {
	return func(str *quic.Stream) {
		r := bufio.NewReaderSize(str, 64<<10)
		hdr := make([]byte, 4)
		var buf []byte
		for {
			m, err := readFrame(r, hdr, buf)
			if err != nil {
				return
			}
			buf = m
			(*s).add(len(m))
		}
	}
}

func rawQUICEcho(str *quic.Stream) { rawEchoRW(str) }

func rawQUICDial(ctx context.Context, addr string, tlsConf *tls.Config, early bool) (*quic.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if early {
		return quic.DialAddrEarly(dctx, addr, tlsConf, nil)
	}
	return quic.DialAddr(dctx, addr, tlsConf, nil)
}

// ticketCache is an LRU ClientSessionCache that signals every ticket
// stored, so that a dial loop can wait for the ticket before it closes the
// connection (as the gotaps QUIC stack's linger after the last stream does).
type ticketCache struct {
	tls.ClientSessionCache
	put chan struct{}
}

func newTicketCache() *ticketCache {
	return &ticketCache{ClientSessionCache: tls.NewLRUClientSessionCache(256), put: make(chan struct{}, 1)}
}

func (c *ticketCache) Put(key string, cs *tls.ClientSessionState) {
	c.ClientSessionCache.Put(key, cs)
	if cs != nil {
		select {
		case c.put <- struct{}{}:
		default:
		}
	}
}

// rawQUICDialLoop measures n serial quic.DialAddr calls (handshake
// complete) or, with a ClientSessionCache in tlsConf, n DialAddrEarly calls
// (0-RTT possible, as the gotaps QUIC stack dials then). Outside the timed
// part the handshake is awaited (and, with a *ticketCache, the session
// ticket, for at most 100 ms) and the connection closed; resumed counts
// the handshakes that resumed a session.
func rawQUICDialLoop(ctx context.Context, addr string, tlsConf *tls.Config, n int) (h *hist, resumed int, err error) {
	h = &hist{}
	early := tlsConf.ClientSessionCache != nil
	tc, _ := tlsConf.ClientSessionCache.(*ticketCache)
	for i := 0; i < n; i++ {
		if tc != nil {
			select {
			case <-tc.put:
			default:
			}
		}
		t0 := time.Now()
		c, err := rawQUICDial(ctx, addr, tlsConf, early)
		d := time.Since(t0)
		if err != nil {
			return nil, 0, fmt.Errorf("DialAddr #%d: %w", i, err)
		}
		h.record(d)
		select {
		case <-c.HandshakeComplete():
		case <-c.Context().Done():
		}
		if c.ConnectionState().TLS.DidResume {
			resumed++
		}
		if tc != nil {
			t := time.NewTimer(100 * time.Millisecond)
			select {
			case <-tc.put:
			case <-t.C:
			}
			t.Stop()
		}
		_ = c.CloseWithError(0, "")
	}
	return h, resumed, nil
}

// quicWarmup is the number of untimed handshakes (or clones) before the
// measured ones.
const quicWarmup = 5

// --- W11 ---

// Implementations of the resumed-handshake rows of W11.
const (
	implTapsResumed    = "gotaps-resumed"
	implRawQUICResumed = "raw-quic-resumed"
)

func runW11(ctx context.Context, p params) (out []Result) {
	const w = "W11"
	pki, err := newQUICPKI()
	if err != nil {
		return []Result{errRow(w, "all", err)}
	}
	var cur *sink // the sink of the current bulk round, shared by both servers
	srv, err := newRawQUICServer(pki, rawQUICSink(&cur))
	if err != nil {
		return []Result{errRow(w, "all", err)}
	}
	defer srv.close()
	env, err := newGotapsQUICEnv(ctx, pki, gotapsSink(&cur, false))
	if err != nil {
		return []Result{errRow(w, implTaps, err)}
	}
	defer func() {
		if err := env.close(); err != nil {
			out = append(out, errRow(w, implTaps, err))
		}
	}()
	// bulk first (closing handshake sessions would slow it down), one stream
	// each, raw and gotaps alternating in rounds so that both see the same
	// machine load
	if err := withCtx(ctx, "QUIC bulk", func() error { return w11Bulk(ctx, p, pki, srv, env, &cur, &out) }); err != nil {
		out = append(out, errRow(w, "all", err))
	}
	// handshakes: full (raw DialAddr without a session cache; gotaps with
	// isolateSession, the judged row), then resumed (raw DialAddrEarly with
	// a ClientSessionCache; gotaps by default, with its System's session
	// cache: both may return at 0-RTT, before the handshake completes)
	cache := pki.clientTLS()
	cache.ClientSessionCache = newTicketCache()
	for _, v := range []struct {
		raw, taps string
		tls       *tls.Config
		isolate   bool
	}{
		{implRawQUIC, implTaps, pki.clientTLS(), true},
		{implRawQUICResumed, implTapsResumed, cache, false},
	} {
		err = withCtx(ctx, "raw quic-go handshakes", func() error {
			if _, _, err := rawQUICDialLoop(ctx, srv.addr, v.tls, quicWarmup); err != nil {
				return err
			}
			h, resumed, err := rawQUICDialLoop(ctx, srv.addr, v.tls, p.w11N)
			if err != nil {
				return err
			}
			out = append(out, latencyRows(w, v.raw, "handshake", h)...)
			out = append(out, res(w, v.raw, "resumed", float64(resumed)/float64(p.w11N), ""))
			return nil
		})
		if err != nil {
			out = append(out, errRow(w, v.raw, err))
		}
		pre := env.quicPreconn(pki, v.isolate)
		err = withCtx(ctx, "gotaps QUIC Initiate loop", func() error {
			if _, err := gotapsInitiateLoop(ctx, pre, quicWarmup, checkQUIC); err != nil {
				return err
			}
			h, err := gotapsInitiateLoop(ctx, pre, p.w11N, nil)
			if err != nil {
				return err
			}
			out = append(out, latencyRows(w, v.taps, "handshake", h)...)
			return nil
		})
		if err != nil {
			out = append(out, errRow(w, v.taps, err))
		}
	}
	judgeRatio(out, implTaps, implRawQUIC, "handshake_p50", "<= 1.1")
	judgeRatio(out, implTaps, implRawQUIC, "handshake_p99", "")
	judgeRatio(out, implTaps, implRawQUIC, "bulk_64KiB", ">= 0.9")
	judgeRatio(out, implTapsResumed, implRawQUICResumed, "handshake_p50", "")
	judgeRatio(out, implTapsResumed, implRawQUICResumed, "handshake_p99", "")
	return out
}

// w11BulkRounds is the number of alternating raw/gotaps bulk rounds (each
// p.w11Dur/w11BulkRounds long).
const w11BulkRounds = 2

// w11Bulk sends 64 KiB length-prefixed messages one way on one stream:
// raw quic-go (one Write of header+payload per message) and gotaps (one
// blocking Send per message, length-prefix framer), in alternating rounds.
func w11Bulk(ctx context.Context, p params, pki *quicPKI, srv *rawQUICServer, env *gotapsEnv, cur **sink, out *[]Result) error {
	const w, size = "W11", 64 << 10
	rc, err := rawQUICDial(ctx, srv.addr, pki.clientTLS(), false)
	if err != nil {
		return fmt.Errorf("raw: %w", err)
	}
	defer rc.CloseWithError(0, "")
	str, err := rc.OpenStreamSync(ctx)
	if err != nil {
		return fmt.Errorf("raw: %w", err)
	}
	fr := frame(make([]byte, size))
	tc, err := env.quicPreconn(pki, true).Initiate(ctx)
	if err != nil {
		return fmt.Errorf("gotaps: %w", err)
	}
	defer tc.Abort()
	if err := checkQUIC(tc); err != nil {
		return err
	}
	payload := make([]byte, size)
	impls := []struct {
		impl string
		send func() error
	}{
		{implRawQUIC, func() error { _, err := str.Write(fr); return err }},
		{implTaps, func() error { return tc.Send(ctx, payload, nil) }},
	}
	rates := make([]float64, len(impls))
	for r := 0; r < w11BulkRounds; r++ {
		for i, v := range impls {
			*cur = newSink(-1)
			rate, err := oneWayTaps(ctx, p.w11Dur/w11BulkRounds, *cur, size, v.send)
			if err != nil {
				return fmt.Errorf("%s bulk: %w", v.impl, err)
			}
			rates[i] += rate / w11BulkRounds
		}
	}
	for i, v := range impls {
		*out = append(*out, res(w, v.impl, "bulk_64KiB", rates[i], "B/s"))
	}
	return nil
}

// --- W12 ---

// cloneLoop runs n (after quicWarmup untimed) clone+first-round-trip
// cycles: open returns the new member and its round trip function (timed
// up to here: "ready"), rt is its first 64 B echo round trip ("rt" is
// open + rt), and release closes it untimed.
func cloneLoop(ctx context.Context, n int, open func() (func() (time.Duration, error), func() error, error)) (ready, rt *hist, err error) {
	ready, rt = &hist{}, &hist{}
	for i := -quicWarmup; i < n; i++ {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		t0 := time.Now()
		first, release, err := open()
		if err != nil {
			return nil, nil, fmt.Errorf("clone #%d: %w", i, err)
		}
		t1 := time.Now()
		_, err = first()
		t2 := time.Now()
		if rerr := release(); err == nil {
			err = rerr
		}
		if err != nil {
			return nil, nil, fmt.Errorf("clone #%d first round trip: %w", i, err)
		}
		if i >= 0 {
			ready.record(t1.Sub(t0))
			rt.record(t2.Sub(t0))
		}
	}
	return ready, rt, nil
}

// gotapsCloneLoop clones c n times; each clone does one round trip and is
// closed (Closed awaited) untimed.
func gotapsCloneLoop(ctx context.Context, c *taps.Connection, n int) (ready, rt *hist, err error) {
	if _, err := gotapsRT(ctx, c)(); err != nil { // the peer knows the session
		return nil, nil, err
	}
	return cloneLoop(ctx, n, func() (func() (time.Duration, error), func() error, error) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		cl, err := c.Clone(cctx)
		if err != nil {
			return nil, nil, err
		}
		release := func() error {
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return closeWait(wctx, cl)
		}
		return gotapsRT(ctx, cl), release, nil
	})
}

// rawRT is one 64 B length-prefixed round trip on rw.
func rawRT(rw interface {
	Write([]byte) (int, error)
	Read([]byte) (int, error)
}) func() (time.Duration, error) {
	req := frame(make([]byte, msg64))
	hdr, buf := make([]byte, 4), make([]byte, msg64)
	return func() (time.Duration, error) {
		t0 := time.Now()
		if _, err := rw.Write(req); err != nil {
			return 0, err
		}
		if _, err := readFrame(rw, hdr, buf); err != nil {
			return 0, err
		}
		return time.Since(t0), nil
	}
}

func runW12(ctx context.Context, p params) (out []Result) {
	const w = "W12"
	rows := func(impl string, ready, rt *hist) {
		out = append(out, latencyRows(w, impl, "clone_rt", rt)...)
		out = append(out, res(w, impl, "clone_ready_median", us(ready.quantile(0.5)), "us"))
	}
	pki, err := newQUICPKI()
	if err != nil {
		return []Result{errRow(w, "all", err)}
	}
	// raw quic-go: OpenStreamSync + first round trip on one session
	if srv, err := newRawQUICServer(pki, rawQUICEcho); err != nil {
		out = append(out, errRow(w, implRawQUIC, err))
	} else {
		err = withCtx(ctx, "raw quic-go streams", func() error {
			c, err := rawQUICDial(ctx, srv.addr, pki.clientTLS(), false)
			if err != nil {
				return err
			}
			defer c.CloseWithError(0, "")
			ready, rt, err := cloneLoop(ctx, p.w12N, func() (func() (time.Duration, error), func() error, error) {
				sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				str, err := c.OpenStreamSync(sctx)
				if err != nil {
					return nil, nil, err
				}
				release := func() error { err := str.Close(); str.CancelRead(0); return err }
				return rawRT(str), release, nil
			})
			if err != nil {
				return err
			}
			rows(implRawQUIC, ready, rt)
			return nil
		})
		if err != nil {
			out = append(out, errRow(w, implRawQUIC, err))
		}
		srv.close()
	}
	// gotaps: Clone of a QUIC connection (a new stream of the session)
	if env, err := newGotapsQUICEnv(ctx, pki, gotapsEcho); err != nil {
		out = append(out, errRow(w, implTaps, err))
	} else {
		err = withCtx(ctx, "gotaps QUIC Clone loop", func() error {
			c, err := env.quicPreconn(pki, true).Initiate(ctx)
			if err != nil {
				return err
			}
			defer c.Abort()
			if err := checkQUIC(c); err != nil {
				return err
			}
			ready, rt, err := gotapsCloneLoop(ctx, c, p.w12N)
			if err != nil {
				return err
			}
			rows(implTaps, ready, rt)
			return nil
		})
		if err != nil {
			out = append(out, errRow(w, implTaps, err))
		}
		if err := env.close(); err != nil {
			out = append(out, errRow(w, implTaps, err))
		}
	}
	// TCP: Clone is a new TCP connection; raw-tcp is Dial + first round trip
	if srv, err := newRawServer(rawEcho); err != nil {
		out = append(out, errRow(w, implRaw, err))
	} else {
		ready, rt, err := cloneLoop(ctx, p.w12N, func() (func() (time.Duration, error), func() error, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", srv.addr())
			if err != nil {
				return nil, nil, err
			}
			return rawRT(c), c.Close, nil
		})
		if err != nil {
			out = append(out, errRow(w, implRaw, err))
		} else {
			rows(implRaw, ready, rt)
		}
		srv.close()
	}
	if env, err := newGotapsEnv(ctx, gotapsEcho); err != nil {
		out = append(out, errRow(w, implTapsTCP, err))
	} else {
		err = withCtx(ctx, "gotaps TCP Clone loop", func() error {
			c, err := env.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Abort()
			if s := c.GetProperties().Stack; s != "tcp" {
				return fmt.Errorf("selected stack %q, want tcp", s)
			}
			ready, rt, err := gotapsCloneLoop(ctx, c, p.w12N)
			if err != nil {
				return err
			}
			rows(implTapsTCP, ready, rt)
			return nil
		})
		if err != nil {
			out = append(out, errRow(w, implTapsTCP, err))
		}
		if err := env.close(); err != nil {
			out = append(out, errRow(w, implTapsTCP, err))
		}
	}
	judgeRatio(out, implTaps, implRawQUIC, "clone_rt_p50", "<= 2")
	judgeRatio(out, implTaps, implRawQUIC, "clone_rt_p99", "")
	judgeRatio(out, implTaps, implRawQUIC, "clone_ready_median", "")
	judgeRatio(out, implTapsTCP, implRaw, "clone_rt_p50", "")
	judgeRatio(out, implTapsTCP, implRaw, "clone_ready_median", "")
	return out
}
