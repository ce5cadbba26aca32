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
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
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
	return listenEnv(ctx, handle, "gotaps QUIC Listen",
		taps.WithSecurityParameters(taps.NewSecurityParameters().SetIdentity(pki.cert)),
		taps.WithTransportProperties(quicProps(false)))
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
	ln    *quic.EarlyListener
	addr  string
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[*quic.Conn]struct{}
}

func newRawQUICServer(pki *quicPKI, handle func(*quic.Stream)) (*rawQUICServer, error) {
	// Allow0RTT and an early listener as the gotaps QUIC stack has them
	// (resumed dials only): a connection is accepted, and its 0-RTT
	// stream data read, before its handshake completes
	ln, err := quic.ListenAddrEarly("127.0.0.1:0", pki.serverTLS(), &quic.Config{Allow0RTT: true})
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

// rawQUICSink counts the payload bytes of length-prefixed messages. With
// fresh, every message is read into a buffer of its own (as a receiver that
// hands each message on must do, and gotaps does); otherwise one buffer is
// reused.
func rawQUICSink(s *atomic.Pointer[sink], fresh bool) func(*quic.Stream) {
	return func(str *quic.Stream) {
		r := bufio.NewReaderSize(str, 64<<10)
		hdr := make([]byte, 4)
		var buf []byte
		for {
			m, err := readFrame(r, hdr, buf)
			if err != nil {
				return
			}
			if !fresh {
				buf = m
			}
			s.Load().add(len(m))
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
// stored, so that a raw dial loop can wait for the ticket before it closes
// the connection (a gotaps Close waits for the peer's FIN, which the server
// sends after the ticket).
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

// rawQUICDialLoop measures n serial dials: quic.DialAddr (returns once
// the handshake is complete; with a ClientSessionCache in tlsConf it
// resumes the session), or with first set quic.DialAddrEarly, opening a
// stream and writing first (length-prefixed) on it (with a cached ticket
// it returns at 0-RTT, first sent as early data). Outside the timed part
// the handshake is awaited (with first, the echo of first is read, so the
// server must echo), then with a *ticketCache the session ticket (at most
// 100 ms), and the connection is closed. resumed counts the handshakes
// that resumed a session, zeroRTT those whose early data the server
// accepted. With first, echo (when not nil) gets the time from the dial to
// the echo read: what 0-RTT saves an application.
func rawQUICDialLoop(ctx context.Context, addr string, tlsConf *tls.Config, n int, first []byte, echo *hist) (h *hist, resumed, zeroRTT int, err error) {
	h = &hist{}
	tc, _ := tlsConf.ClientSessionCache.(*ticketCache)
	var msg []byte
	if first != nil {
		msg = frame(first)
	}
	hdr, buf := make([]byte, 4), make([]byte, len(first))
	for i := 0; i < n; i++ {
		if tc != nil {
			select {
			case <-tc.put:
			default:
			}
		}
		t0 := time.Now()
		c, err := rawQUICDial(ctx, addr, tlsConf, first != nil)
		var str *quic.Stream
		if err == nil && first != nil {
			if str, err = c.OpenStreamSync(ctx); err == nil {
				_, err = str.Write(msg)
			}
		}
		d := time.Since(t0)
		if err != nil {
			if c != nil {
				_ = c.CloseWithError(0, "")
			}
			return nil, 0, 0, fmt.Errorf("dial #%d: %w", i, err)
		}
		h.record(d)
		if str != nil {
			if _, err := readFrame(str, hdr, buf); err != nil {
				_ = c.CloseWithError(0, "")
				return nil, 0, 0, fmt.Errorf("dial #%d: echo: %w", i, err)
			}
			if echo != nil {
				echo.record(time.Since(t0))
			}
		}
		select {
		case <-c.HandshakeComplete():
		case <-c.Context().Done():
		}
		st := c.ConnectionState()
		if st.TLS.DidResume {
			resumed++
		}
		if st.Used0RTT {
			zeroRTT++
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
	return h, resumed, zeroRTT, nil
}

// gotapsQUICInitiateLoop measures n serial Initiate calls (with first:
// InitiateWithSend of first, safely replayable, so that with a cached
// ticket it rides 0-RTT; the server must echo). Outside the timed part the
// echo is received (with first), the connection's TLS session is inspected
// (resumed, zeroRTT count as in rawQUICDialLoop) and the connection closed,
// its Closed awaited. With first, echo (when not nil) gets the time from
// the call to the echo received.
func gotapsQUICInitiateLoop(ctx context.Context, pre *taps.Preconnection, n int, first []byte, echo *hist) (h *hist, resumed, zeroRTT int, err error) {
	h = &hist{}
	for i := 0; i < n; i++ {
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		t0 := time.Now()
		var c *taps.Connection
		if first != nil {
			c, err = pre.InitiateWithSend(ictx, first, taps.NewMessageContext().SafelyReplayable(true))
		} else {
			c, err = pre.Initiate(ictx)
		}
		d := time.Since(t0)
		cancel()
		if err != nil {
			return nil, 0, 0, fmt.Errorf("Initiate #%d: %w", i, err)
		}
		h.record(d)
		err = func() error {
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if first != nil {
				if _, err := c.Receive(wctx); err != nil {
					return fmt.Errorf("echo: %w", err)
				}
				if echo != nil {
					echo.record(time.Since(t0))
				}
			}
			props, err := c.GetPropertiesContext(wctx)
			if err != nil {
				return err
			}
			if props.Stack != "quic" {
				return fmt.Errorf("selected stack %q, want quic", props.Stack)
			}
			if props.Socket != nil && props.Socket.Resumed {
				resumed++
			}
			if props.Socket != nil && props.Socket.Used0RTT {
				zeroRTT++
			}
			return closeWait(wctx, c)
		}()
		if err != nil {
			c.Abort()
			return nil, 0, 0, fmt.Errorf("Initiate #%d: %w", i, err)
		}
	}
	return h, resumed, zeroRTT, nil
}

// quicWarmup is the number of untimed handshakes (or clones) before the
// measured ones.
const quicWarmup = 5

// --- W11 ---

// Implementations of the extra rows of W11.
const (
	// handshakes resuming a cached session, returning once it is complete
	// (raw quic.DialAddr with a ClientSessionCache; gotaps Initiate with
	// its System's session cache)
	implTapsResumed    = "gotaps-resumed"
	implRawQUICResumed = "raw-quic-resumed"
	// 0-RTT: a resumed session carrying the first message as early data,
	// returning before the handshake completes (raw DialAddrEarly, stream
	// opened and written; gotaps InitiateWithSend of a safely replayable
	// message, the only way RFC 9622 allows 0-RTT)
	implTaps0RTT    = "gotaps-0rtt"
	implRawQUIC0RTT = "raw-quic-0rtt"
	// raw quic-go reading every bulk message into a buffer of its own (as
	// gotaps must: a received Message owns its Data)
	implRawQUICFresh = "raw-quic-fresh"
)

func runW11(ctx context.Context, p params) (out []Result) {
	const w = "W11"
	pki, err := newQUICPKI()
	if err != nil {
		return []Result{errRow(w, "all", err)}
	}
	var cur atomic.Pointer[sink] // the sink of the current bulk round, shared by all servers
	srv, err := newRawQUICServer(pki, rawQUICSink(&cur, false))
	if err != nil {
		return []Result{errRow(w, "all", err)}
	}
	defer srv.close()
	fresh, err := newRawQUICServer(pki, rawQUICSink(&cur, true))
	if err != nil {
		return []Result{errRow(w, "all", err)}
	}
	defer fresh.close()
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
	if err := withCtx(ctx, "QUIC bulk", func() error { return w11Bulk(ctx, p, pki, srv, fresh, env, &cur, &out) }); err != nil {
		out = append(out, errRow(w, "all", err))
	}
	// handshakes: full (raw DialAddr without a session cache; gotaps with
	// isolateSession, the judged row), then resumed (both with a session
	// cache, returning once the handshake is complete)
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
		out = append(out, w11Handshakes(ctx, p, v.raw, v.taps, srv.addr, v.tls, env.quicPreconn(pki, v.isolate), nil)...)
	}
	// 0-RTT: needs echo servers (the echo tells the client its early data
	// arrived, and completes the handshake before the session is inspected)
	if !p.no0RTT {
		out = append(out, w11ZeroRTT(ctx, p, pki)...)
	}
	judgeRatio(out, implTaps, implRawQUIC, "handshake_p50", "<= 1.1")
	judgeRatio(out, implTaps, implRawQUIC, "handshake_p99", "")
	judgeRatio(out, implTaps, implRawQUIC, "bulk_64KiB", ">= 0.9")
	judgeRatio(out, implRawQUICFresh, implRawQUIC, "bulk_64KiB", "")
	for _, pair := range [][2]string{{implTapsResumed, implRawQUICResumed}, {implTaps0RTT, implRawQUIC0RTT}} {
		judgeRatio(out, pair[0], pair[1], "handshake_p50", "")
		judgeRatio(out, pair[0], pair[1], "handshake_p99", "")
	}
	judgeRatio(out, implTaps0RTT, implRawQUIC0RTT, "first_echo_median", "")
	return out
}

// w11Handshakes measures raw dials (rawQUICDialLoop) to rawAddr and gotaps
// Initiates (gotapsQUICInitiateLoop) of pre, after quicWarmup untimed ones
// each, in alternating rounds (rounds.go: p.w11N handshakes each in all),
// and reports their latencies and which fraction resumed (or, with first,
// used 0-RTT).
func w11Handshakes(ctx context.Context, p params, raw, tapsImpl, rawAddr string, rawTLS *tls.Config, pre *taps.Preconnection, first []byte) (out []Result) {
	const w = "W11"
	k := p.roundsOf()
	type side struct {
		rounder
		h, echo          hist // echo: to the first message's echo (with first)
		resumed, zeroRTT int
		loop             func(n int, echo *hist) (*hist, int, int, error)
	}
	rawSide := &side{rounder: rounder{name: raw}, loop: func(n int, echo *hist) (*hist, int, int, error) {
		return rawQUICDialLoop(ctx, rawAddr, rawTLS, n, first, echo)
	}}
	tapsSide := &side{rounder: rounder{name: tapsImpl}, loop: func(n int, echo *hist) (*hist, int, int, error) {
		return gotapsQUICInitiateLoop(ctx, pre, n, first, echo)
	}}
	for _, sd := range []*side{rawSide, tapsSide} {
		sd.err = withCtx(ctx, sd.name+" warm-up", func() error {
			_, _, _, err := sd.loop(quicWarmup, nil)
			return err
		})
		sd.run = func(r int) (float64, error) {
			h, resumed, zeroRTT, err := sd.loop(share(p.w11N, k, r), &sd.echo)
			if err != nil {
				return 0, err
			}
			sd.h.add(h)
			sd.resumed += resumed
			sd.zeroRTT += zeroRTT
			return us(h.quantile(0.5)), nil
		}
	}
	alternate(ctx, k, &rawSide.rounder, &tapsSide.rounder)
	for _, sd := range []*side{rawSide, tapsSide} {
		if sd.err != nil {
			out = append(out, errRow(w, sd.name, sd.err))
			continue
		}
		out = append(out, latencyRows(w, sd.name, "handshake", &sd.h)...)
		if first != nil {
			// the median only, among the row's other figures (the row's
			// latency columns are the handshake's)
			out = append(out, res(w, sd.name, "first_echo_median", us(sd.echo.quantile(0.5)), "us"))
			out = append(out, res(w, sd.name, "0rtt", float64(sd.zeroRTT)/float64(sd.h.n), ""))
		} else {
			out = append(out, res(w, sd.name, "resumed", float64(sd.resumed)/float64(sd.h.n), ""))
		}
	}
	return append(out, spreadRows(w, "handshake_p50", &tapsSide.rounder, &rawSide.rounder)...)
}

// w11ZeroRTT measures 0-RTT dials against echo servers: raw DialAddrEarly
// with a ClientSessionCache, gotaps InitiateWithSend with its System's
// session cache.
func w11ZeroRTT(ctx context.Context, p params, pki *quicPKI) (out []Result) {
	const w = "W11"
	srv, err := newRawQUICServer(pki, rawQUICEcho)
	if err != nil {
		return []Result{errRow(w, implRawQUIC0RTT, err)}
	}
	defer srv.close()
	env, err := newGotapsQUICEnv(ctx, pki, gotapsEcho)
	if err != nil {
		return []Result{errRow(w, implTaps0RTT, err)}
	}
	defer func() {
		if err := env.close(); err != nil {
			out = append(out, errRow(w, implTaps0RTT, err))
		}
	}()
	cache := pki.clientTLS()
	cache.ClientSessionCache = newTicketCache()
	first := make([]byte, msg64)
	return w11Handshakes(ctx, p, implRawQUIC0RTT, implTaps0RTT, srv.addr, cache, env.quicPreconn(pki, false), first)
}

// w11BulkRounds is the number of alternating bulk rounds (each
// p.w11Dur/w11BulkRounds long per implementation; see rounds.go).
const w11BulkRounds = 2

// w11Bulk sends 64 KiB length-prefixed messages one way on one stream:
// raw quic-go (one Write of header+payload per message) to a receiver that
// reuses one buffer and to one that reads every message into a new buffer
// (raw-quic-fresh), and gotaps (one blocking Send per message,
// length-prefix framer), in alternating rounds.
func w11Bulk(ctx context.Context, p params, pki *quicPKI, srv, fresh *rawQUICServer, env *gotapsEnv, cur *atomic.Pointer[sink], out *[]Result) error {
	const w, size = "W11", 64 << 10
	fr := frame(make([]byte, size))
	var conns []*quic.Conn
	defer func() {
		for _, c := range conns {
			_ = c.CloseWithError(0, "")
		}
	}()
	rawSend := func(addr string) (func() error, error) {
		rc, err := rawQUICDial(ctx, addr, pki.clientTLS(), false)
		if err != nil {
			return nil, fmt.Errorf("raw: %w", err)
		}
		conns = append(conns, rc)
		str, err := rc.OpenStreamSync(ctx)
		if err != nil {
			return nil, fmt.Errorf("raw: %w", err)
		}
		return func() error { _, err := str.Write(fr); return err }, nil
	}
	rawReuse, err := rawSend(srv.addr)
	if err != nil {
		return err
	}
	rawFresh, err := rawSend(fresh.addr)
	if err != nil {
		return err
	}
	tc, err := env.quicPreconn(pki, true).Initiate(ctx)
	if err != nil {
		return fmt.Errorf("gotaps: %w", err)
	}
	defer tc.Abort()
	if err := checkQUIC(tc); err != nil {
		return err
	}
	payload := make([]byte, size)
	d := p.w11Dur / w11BulkRounds
	imps := []*bulkRounder{
		newBulkRounder(ctx, implRawQUIC, cur, false, d, size, rawReuse, nil),
		newBulkRounder(ctx, implTaps, cur, false, d, size, func() error { return tc.Send(ctx, payload, nil) }, nil),
		newBulkRounder(ctx, implRawQUICFresh, cur, false, d, size, rawFresh, nil),
	}
	alternate(ctx, w11BulkRounds, &imps[0].rounder, &imps[1].rounder, &imps[2].rounder)
	for _, im := range imps {
		if im.err != nil {
			*out = append(*out, errRow(w, im.name, fmt.Errorf("bulk: %w", im.err)))
			continue
		}
		*out = append(*out, res(w, im.name, "bulk_64KiB", float64(im.bytes)/im.el.Seconds(), "B/s"))
	}
	*out = append(*out, spreadRows(w, "bulk_64KiB", &imps[1].rounder, &imps[0].rounder)...)
	return nil
}

// --- W12 ---

// cloneOpen makes one clone (or stream, or connection) and returns its
// first round trip and the function that closes it, untimed.
type cloneOpen func() (first func() (time.Duration, error), release func() error, err error)

// cloneLoop makes warm untimed clones, then n timed ones, recording into
// ready the time to a usable clone (open) and into rt the time to its
// first round trip's end (open + rt); release closes each, untimed.
func cloneLoop(ctx context.Context, warm, n int, open cloneOpen) (ready, rt *hist, err error) {
	ready, rt = &hist{}, &hist{}
	for i := -warm; i < n; i++ {
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

// gotapsCloneOpen clones c; each clone does one round trip and is closed
// (Closed awaited) untimed.
func gotapsCloneOpen(ctx context.Context, c *taps.Connection) cloneOpen {
	return func() (func() (time.Duration, error), func() error, error) {
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
	}
}

// cloneRounder is one clone implementation measured in alternating rounds
// (rounds.go), its warm-up done before the first.
type cloneRounder struct {
	rounder
	ready, rt hist
}

func newCloneRounder(ctx context.Context, name string, n, k int, open cloneOpen, setupErr error) *cloneRounder {
	cr := &cloneRounder{rounder: rounder{name: name, err: setupErr}}
	if cr.err == nil {
		cr.err = withCtx(ctx, name+" warm-up", func() error {
			_, _, err := cloneLoop(ctx, quicWarmup, 0, open)
			return err
		})
	}
	cr.run = func(r int) (float64, error) {
		ready, rt, err := cloneLoop(ctx, 0, share(n, k, r), open)
		if err != nil {
			return 0, err
		}
		cr.ready.add(ready)
		cr.rt.add(rt)
		return us(rt.quantile(0.5)), nil
	}
	return cr
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
	k := p.roundsOf()
	pki, err := newQUICPKI()
	if err != nil {
		return []Result{errRow(w, "all", err)}
	}
	// Each implementation is set up (and warmed up) once, then the four
	// run in alternating rounds (rounds.go), each pair back to back.
	var (
		rawQ, tapsQ, rawT, tapsT *cloneRounder
		notSet                   = errors.New("not set up")
	)
	// raw quic-go: OpenStreamSync + first round trip on one session
	rawQ = &cloneRounder{rounder: rounder{name: implRawQUIC, err: notSet}}
	if srv, err := newRawQUICServer(pki, rawQUICEcho); err != nil {
		rawQ.err = err
	} else {
		defer srv.close()
		var c *quic.Conn
		err = withCtx(ctx, "raw quic-go dial", func() error {
			var err error
			c, err = rawQUICDial(ctx, srv.addr, pki.clientTLS(), false)
			return err
		})
		if err == nil {
			defer c.CloseWithError(0, "")
		}
		rawQ = newCloneRounder(ctx, implRawQUIC, p.w12N, k, func() (func() (time.Duration, error), func() error, error) {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			str, err := c.OpenStreamSync(sctx)
			if err != nil {
				return nil, nil, err
			}
			release := func() error { err := str.Close(); str.CancelRead(0); return err }
			return rawRT(str), release, nil
		}, err)
	}
	// gotaps: Clone of a QUIC connection (a new stream of the session)
	tapsQ = &cloneRounder{rounder: rounder{name: implTaps, err: notSet}}
	if env, err := newGotapsQUICEnv(ctx, pki, gotapsEcho); err != nil {
		tapsQ.err = err
	} else {
		defer func() {
			if err := env.close(); err != nil {
				out = append(out, errRow(w, implTaps, err))
			}
		}()
		var c *taps.Connection
		err = withCtx(ctx, "gotaps QUIC Initiate", func() error {
			var err error
			if c, err = env.quicPreconn(pki, true).Initiate(ctx); err != nil {
				return err
			}
			if err := checkQUIC(c); err != nil {
				return err
			}
			_, err = gotapsRT(ctx, c)() // the peer knows the session
			return err
		})
		var open cloneOpen
		if err == nil { // (after a failure, or a hang, env.close ends c: a hung Initiate may still set it)
			defer c.Abort()
			open = gotapsCloneOpen(ctx, c)
		}
		tapsQ = newCloneRounder(ctx, implTaps, p.w12N, k, open, err)
	}
	// TCP: Clone is a new TCP connection; raw-tcp is Dial + first round trip
	rawT = &cloneRounder{rounder: rounder{name: implRaw, err: notSet}}
	if srv, err := newRawServer(rawEcho); err != nil {
		rawT.err = err
	} else {
		defer srv.close()
		rawT = newCloneRounder(ctx, implRaw, p.w12N, k, func() (func() (time.Duration, error), func() error, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", srv.addr())
			if err != nil {
				return nil, nil, err
			}
			return rawRT(c), c.Close, nil
		}, nil)
	}
	tapsT = &cloneRounder{rounder: rounder{name: implTapsTCP, err: notSet}}
	if env, err := newGotapsEnv(ctx, gotapsEcho); err != nil {
		tapsT.err = err
	} else {
		defer func() {
			if err := env.close(); err != nil {
				out = append(out, errRow(w, implTapsTCP, err))
			}
		}()
		var c *taps.Connection
		err = withCtx(ctx, "gotaps TCP Initiate", func() error {
			var err error
			if c, err = env.dial(ctx); err != nil {
				return err
			}
			if s := c.GetProperties().Stack; s != "tcp" {
				return fmt.Errorf("selected stack %q, want tcp", s)
			}
			_, err = gotapsRT(ctx, c)()
			return err
		})
		var open cloneOpen
		if err == nil { // (after a failure, or a hang, env.close ends c: a hung Initiate may still set it)
			defer c.Abort()
			open = gotapsCloneOpen(ctx, c)
		}
		tapsT = newCloneRounder(ctx, implTapsTCP, p.w12N, k, open, err)
	}
	alternate(ctx, k, &rawQ.rounder, &tapsQ.rounder, &rawT.rounder, &tapsT.rounder)
	for _, cr := range []*cloneRounder{rawQ, tapsQ, rawT, tapsT} {
		if cr.err != nil {
			out = append(out, errRow(w, cr.name, cr.err))
			continue
		}
		out = append(out, latencyRows(w, cr.name, "clone_rt", &cr.rt)...)
		out = append(out, res(w, cr.name, "clone_ready_median", us(cr.ready.quantile(0.5)), "us"))
	}
	out = append(out, spreadRows(w, "clone_rt_p50", &tapsQ.rounder, &rawQ.rounder)...)
	judgeRatio(out, implTaps, implRawQUIC, "clone_rt_p50", "<= 2")
	judgeRatio(out, implTaps, implRawQUIC, "clone_rt_p99", "")
	judgeRatio(out, implTaps, implRawQUIC, "clone_ready_median", "")
	judgeRatio(out, implTapsTCP, implRaw, "clone_rt_p50", "")
	judgeRatio(out, implTapsTCP, implRaw, "clone_ready_median", "")
	return out
}
