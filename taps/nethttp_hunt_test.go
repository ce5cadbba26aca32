package taps

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The tests in this file run net/http's Server and Client over NetListener
// and NetConn, as a Go server author would, and check what net/http
// relies on: keep-alive reuse, read deadlines (IdleTimeout,
// ReadHeaderTimeout, the background read and its abort), graceful
// Shutdown, flushing, cancellation, Hijack and TLS.

// tapsDialContext is an http.Transport.DialContext that initiates a
// gotaps Connection to addr ("ip:port") and returns its NetConn.
func tapsDialContext(sys *System, opts ...PreconnectionOption) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return nil, err
		}
		all := append([]PreconnectionOption{WithSystem(sys), WithRemoteEndpoint(loopbackRemote(ap))}, opts...)
		c, err := NewPreconnection(all...).Initiate(ctx)
		if err != nil {
			return nil, err
		}
		return c.NetConn(), nil
	}
}

// httpStackCase is a protocol stack to run a test over: the options of
// the server's Listener and of the client's Preconnection.
type httpStackCase struct {
	name         string
	lopts, dopts []PreconnectionOption
}

// forHTTPStacks runs test over TCP and over QUIC (a stream per
// connection, with TLS below net/http).
func forHTTPStacks(t *testing.T, test func(*testing.T, httpStackCase)) {
	pki := newTestPKI(t)
	for _, sc := range []httpStackCase{
		{"tcp", []PreconnectionOption{WithProtocols("tcp")}, []PreconnectionOption{WithProtocols("tcp")}},
		{"quic",
			[]PreconnectionOption{WithProtocols("quic"), WithSecurityParameters(NewSecurityParameters().SetIdentity(pki.server).SetALPN("http/1.1"))},
			[]PreconnectionOption{WithProtocols("quic"), WithSecurityParameters(NewSecurityParameters().SetTrustedCAs(pki.pool).SetALPN("http/1.1"))}},
	} {
		t.Run(sc.name, func(t *testing.T) { test(t, sc) })
	}
}

// httpHarness is an http.Server serving on a gotaps NetListener.
type httpHarness struct {
	srv    *http.Server
	nl     net.Listener // the gotaps NetListener
	addr   string
	served chan error // Serve's result

	newConns atomic.Int64
	closed   chan net.Conn // the conns that reached StateClosed
	hijacked chan net.Conn
}

// serveHTTP serves srv on a new loopback Listener of sys; wrap, if not nil,
// wraps the NetListener (tls.NewListener, ...). srv.ConnState is chained.
func serveHTTP(t *testing.T, sys *System, srv *http.Server, wrap func(net.Listener) net.Listener, opts ...PreconnectionOption) *httpHarness {
	t.Helper()
	all := append([]PreconnectionOption{WithSystem(sys), WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))}, opts...)
	ln, err := NewPreconnection(all...).Listen(testCtx(t))
	require.NoError(t, err)
	h := &httpHarness{srv: srv, nl: ln.NetListener(), served: make(chan error, 1),
		closed: make(chan net.Conn, 4096), hijacked: make(chan net.Conn, 64)}
	h.addr = h.nl.Addr().String()
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			h.newConns.Add(1)
		case http.StateClosed:
			h.closed <- c
		case http.StateHijacked:
			h.hijacked <- c
		}
		if prev != nil {
			prev(c, s)
		}
	}
	var sl net.Listener = h.nl
	if wrap != nil {
		sl = wrap(sl)
	}
	go func() { h.served <- srv.Serve(sl) }()
	t.Cleanup(func() {
		_ = srv.Close()
		select {
		case <-h.served:
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
	return h
}

// tapsClient is an http.Client dialing gotaps Connections in sys.
func tapsClient(t *testing.T, sys *System, tr *http.Transport, opts ...PreconnectionOption) *http.Client {
	t.Helper()
	if tr == nil {
		tr = &http.Transport{}
	}
	tr.DialContext = tapsDialContext(sys, opts...)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// waitConn waits for a conn on ch (a ConnState event) for at most d.
func waitConn(t *testing.T, ch <-chan net.Conn, d time.Duration, what string) net.Conn {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(d):
		t.Fatalf("timed out waiting for %s", what)
		return nil
	}
}

// httpPattern is n deterministic bytes from seed.
func httpPattern(seed, n int) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func echoHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello")
	})
	return mux
}

// 50 keep-alive clients x 40 requests each, with bodies of a few KiB and
// one of 1 MiB: every response is the request's body, and connections are
// reused (far fewer connections than requests).
func TestNetHTTPHuntConcurrentKeepAlive(t *testing.T) {
	sys := newTestSystem(t)
	h := serveHTTP(t, sys, &http.Server{Handler: echoHandler()}, nil)
	workers, perWorker := 50, 40
	if testing.Short() {
		workers, perWorker = 10, 10
	} else if raceDetector {
		perWorker = 16 // under ~5 s
	}
	client := tapsClient(t, sys, &http.Transport{MaxIdleConnsPerHost: 2 * workers})
	url := "http://" + h.addr + "/echo"
	var reused atomic.Int64
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWorker; i++ {
				size := 1<<10 + (g*perWorker+i)%5*1500
				if g == 0 && i == perWorker/2 {
					size = 1 << 20
				}
				want := httpPattern(g*1000+i, size)
				trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
					if ci.Reused {
						reused.Add(1)
					}
				}}
				ctx := httptrace.WithClientTrace(context.Background(), trace)
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(want))
				if err != nil {
					errs <- err
					return
				}
				resp, err := client.Do(req)
				if err != nil {
					errs <- fmt.Errorf("worker %d request %d: %w", g, i, err)
					return
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					errs <- fmt.Errorf("worker %d request %d: reading the body: %w", g, i, err)
					return
				}
				if resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
					errs <- fmt.Errorf("worker %d request %d: status %d, %d bytes back for %d sent (equal %v)",
						g, i, resp.StatusCode, len(got), len(want), bytes.Equal(got, want))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	total := int64(workers * perWorker)
	n := h.newConns.Load()
	t.Logf("%d requests over %d connections (%d on a reused connection)", total, n, reused.Load())
	require.LessOrEqual(t, n, int64(2*workers), "connections are not reused")
	// a new connection may go unused (the Transport dials, then a reused
	// one is free first), never carry two requests unreused
	require.GreaterOrEqual(t, n, total-reused.Load(), "fewer connections than requests on a new one")
}

// recordingListener records the Read errors of the conns it accepts (the
// errors net/http sees).
type recordingListener struct {
	net.Listener
	errs chan error
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c, errs: l.errs}, nil
}

type recordingConn struct {
	net.Conn
	errs chan error
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		select {
		case c.errs <- err:
		default:
		}
	}
	return n, err
}

func (c *recordingConn) CloseWrite() error {
	return c.Conn.(interface{ CloseWrite() error }).CloseWrite()
}

// requireTimeoutErr checks err is a read deadline's error as net/http
// expects it (isCommonNetReadError: a net.Error whose Timeout is true).
func requireTimeoutErr(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	var ne net.Error
	require.True(t, errors.As(err, &ne), "%v is not a net.Error", err)
	require.True(t, ne.Timeout(), "%v: Timeout() is false", err)
}

// IdleTimeout: a keep-alive connection reused once, then idle, is closed
// by the server once IdleTimeout has passed: the idle Read ends with a
// timeout error as the read deadline passes.
func TestNetHTTPHuntIdleTimeout(t *testing.T) { forHTTPStacks(t, testNetHTTPIdleTimeout) }

func testNetHTTPIdleTimeout(t *testing.T, sc httpStackCase) {
	sys := newTestSystem(t)
	const idle = 200 * time.Millisecond
	errs := make(chan error, 16)
	h := serveHTTP(t, sys, &http.Server{Handler: echoHandler(), IdleTimeout: idle, ReadHeaderTimeout: idle},
		func(l net.Listener) net.Listener { return &recordingListener{Listener: l, errs: errs} }, sc.lopts...)
	client := tapsClient(t, sys, &http.Transport{IdleConnTimeout: time.Minute}, sc.dopts...)
	get := func() bool {
		var reused bool
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(ci httptrace.GotConnInfo) { reused = ci.Reused }})
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.addr+"/hello", nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, "hello", string(body))
		return reused
	}
	require.False(t, get())
	t0 := time.Now()
	// the header deadline of the second request replaces the idle one,
	// which is then moved again after it
	require.True(t, get(), "the keep-alive connection was not reused")
	waitConn(t, h.closed, 3*time.Second, "the server to close the idle connection")
	elapsed := time.Since(t0)
	require.GreaterOrEqual(t, elapsed, idle, "closed before IdleTimeout")
	require.Equal(t, int64(1), h.newConns.Load())
	select {
	case err := <-errs:
		requireTimeoutErr(t, err)
	default:
		t.Fatal("the idle connection was closed without a Read error")
	}
	// the client gets over the closed connection (noticed, or retried)
	get()
	require.Equal(t, int64(2), h.newConns.Load())
}

// WriteTimeout: a response to a client that does not read fills the
// buffers; the blocked Write ends with a timeout as the write deadline
// passes, and the server closes the connection.
func TestNetHTTPHuntWriteTimeout(t *testing.T) { forHTTPStacks(t, testNetHTTPWriteTimeout) }

func testNetHTTPWriteTimeout(t *testing.T, sc httpStackCase) {
	sys := newTestSystem(t)
	const wt = 300 * time.Millisecond
	writeErr := make(chan error, 1)
	written := make(chan int, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /flood", func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 64<<10)
		n := 0
		for n < 256<<20 {
			m, err := w.Write(chunk)
			n += m
			if err != nil {
				written <- n
				writeErr <- err
				return
			}
		}
		written <- n
		writeErr <- nil
	})
	h := serveHTTP(t, sys, &http.Server{Handler: mux, WriteTimeout: wt}, nil, sc.lopts...)
	c, err := tapsDialContext(sys, sc.dopts...)(testCtx(t), "tcp", h.addr)
	require.NoError(t, err)
	defer c.Close()
	t0 := time.Now()
	_, err = io.WriteString(c, "GET /flood HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	select {
	case err := <-writeErr:
		requireTimeoutErr(t, err)
	case <-time.After(4 * time.Second):
		t.Fatal("the server's Write did not time out")
	}
	require.GreaterOrEqual(t, time.Since(t0), wt, "timed out before WriteTimeout")
	t.Logf("%d bytes written before the timeout", <-written)
	waitConn(t, h.closed, 3*time.Second, "the server to close the connection")
}

// ReadTimeout bounds the whole request: a body that stops coming makes
// the handler's body Read fail with a timeout error.
func TestNetHTTPHuntReadTimeoutBody(t *testing.T) { forHTTPStacks(t, testNetHTTPReadTimeoutBody) }

func testNetHTTPReadTimeoutBody(t *testing.T, sc httpStackCase) {
	sys := newTestSystem(t)
	const rt = 300 * time.Millisecond
	bodyErr := make(chan error, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		bodyErr <- err
	})
	h := serveHTTP(t, sys, &http.Server{Handler: mux, ReadTimeout: rt}, nil, sc.lopts...)
	// before the dial: the server's ReadTimeout runs from the start of its
	// read of the request, which may come before the dial returns here
	t0 := time.Now()
	c, err := tapsDialContext(sys, sc.dopts...)(testCtx(t), "tcp", h.addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part")
	require.NoError(t, err)
	select {
	case err := <-bodyErr:
		requireTimeoutErr(t, err)
	case <-time.After(4 * time.Second):
		t.Fatal("the handler's body Read did not time out")
	}
	require.GreaterOrEqual(t, time.Since(t0), rt, "timed out before ReadTimeout")
	waitConn(t, h.closed, 3*time.Second, "the server to close the connection")
}

// ReadHeaderTimeout cuts a slowloris client (a partial header, then
// nothing) without a reply (net/http replies 400 to any read error but a
// timeout or EOF); and the header deadline is cleared once the header is
// read: a handler reading a body that arrives after it would have passed
// gets it.
func TestNetHTTPHuntReadHeaderTimeout(t *testing.T) { forHTTPStacks(t, testNetHTTPReadHeaderTimeout) }

func testNetHTTPReadHeaderTimeout(t *testing.T, sc httpStackCase) {
	sys := newTestSystem(t)
	const hdr = 200 * time.Millisecond
	errs := make(chan error, 16)
	inHandler := make(chan struct{}, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /slowbody", func(w http.ResponseWriter, r *http.Request) {
		inHandler <- struct{}{}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = w.Write(body)
	})
	h := serveHTTP(t, sys, &http.Server{Handler: mux, ReadHeaderTimeout: hdr},
		func(l net.Listener) net.Listener { return &recordingListener{Listener: l, errs: errs} }, sc.lopts...)
	dial := tapsDialContext(sys, sc.dopts...)
	ctx := testCtx(t)

	// the slow-body request: its header deadline is set before the
	// slowloris' one
	slow, err := dial(ctx, "tcp", h.addr)
	require.NoError(t, err)
	defer slow.Close()
	_, err = io.WriteString(slow, "POST /slowbody HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
	require.NoError(t, err)
	select {
	case <-inHandler:
	case <-ctx.Done():
		t.Fatal("the handler did not start")
	}

	t0 := time.Now()
	loris, err := dial(ctx, "tcp", h.addr)
	require.NoError(t, err)
	defer loris.Close()
	_, err = io.WriteString(loris, "GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	require.NoError(t, err)
	require.NoError(t, loris.SetReadDeadline(time.Now().Add(3*time.Second)))
	reply, err := io.ReadAll(loris)
	require.NoError(t, err, "the slowloris connection was not closed by the server")
	require.Empty(t, string(reply), "the server replied to a header timeout")
	require.GreaterOrEqual(t, time.Since(t0), hdr, "cut before ReadHeaderTimeout")
	waitConn(t, h.closed, 3*time.Second, "StateClosed of the slowloris connection")
	select {
	case err := <-errs:
		requireTimeoutErr(t, err)
	default:
		t.Fatal("the slowloris connection was closed without a Read error")
	}

	// the slow body's header deadline has passed too: it was cleared
	_, err = io.WriteString(slow, "hello")
	require.NoError(t, err)
	require.NoError(t, slow.SetReadDeadline(time.Now().Add(3*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(slow), nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "hello", string(body))
}

// Shutdown with an active and an idle connection: the listener closes at
// once (Serve returns ErrServerClosed while the request is still active;
// Accept returns an error wrapping net.ErrClosed), the idle connection is
// closed, Shutdown returns once the active request has finished, and it
// got its whole response.
func TestNetHTTPHuntShutdown(t *testing.T) { forHTTPStacks(t, testNetHTTPShutdown) }

func testNetHTTPShutdown(t *testing.T, sc httpStackCase) {
	sys := newTestSystem(t)
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "part one;")
		w.(http.Flusher).Flush()
		entered <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "part two")
	})
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello")
	})
	h := serveHTTP(t, sys, &http.Server{Handler: mux}, nil, sc.lopts...)
	active := tapsClient(t, sys, nil, sc.dopts...)
	idle := tapsClient(t, sys, &http.Transport{IdleConnTimeout: time.Minute}, sc.dopts...)

	resp, err := idle.Get("http://" + h.addr + "/hello")
	require.NoError(t, err)
	_, err = io.Copy(io.Discard, resp.Body)
	require.NoError(t, err)
	resp.Body.Close()

	type result struct {
		body string
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := active.Get("http://" + h.addr + "/slow")
		if err != nil {
			slow <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		slow <- result{string(b), err}
	}()
	<-entered

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- h.srv.Shutdown(ctx)
	}()
	select {
	case err := <-h.served:
		require.ErrorIs(t, err, http.ErrServerClosed)
		h.served <- err // for the cleanup
	case <-time.After(3 * time.Second):
		t.Fatal("Serve did not return while a request was active")
	}
	_, err = h.nl.Accept()
	require.ErrorIs(t, err, net.ErrClosed)
	waitConn(t, h.closed, 3*time.Second, "the idle connection to be closed")
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a request was active", err)
	case r := <-slow:
		t.Fatalf("the active request ended early: %q, %v", r.body, r.err)
	default:
	}
	close(release)
	select {
	case err := <-shut:
		require.NoError(t, err)
	case <-time.After(4 * time.Second):
		t.Fatal("Shutdown did not return once the request was done")
	}
	r := <-slow
	require.NoError(t, r.err)
	require.Equal(t, "part one;part two", r.body)
	waitConn(t, h.closed, 3*time.Second, "the active connection to be closed")

	// nothing listens now: a new connection is refused
	_, err = tapsDialContext(sys, sc.dopts...)(testCtx(t), "tcp", h.addr)
	require.Error(t, err)
}

// Flushed chunks reach the client one by one: the server writes chunk
// i+1 only once the client has read chunk i. And with full duplex, the
// request body streams too: each chunk the client sends is echoed before
// it sends the next.
func TestNetHTTPHuntFlushStreaming(t *testing.T) { forHTTPStacks(t, testNetHTTPFlushStreaming) }

func testNetHTTPFlushStreaming(t *testing.T, sc httpStackCase) {
	sys := newTestSystem(t)
	const chunks = 20
	next := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < chunks; i++ {
			fmt.Fprintf(w, "chunk %02d\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	})
	mux.HandleFunc("POST /duplex", func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		br := bufio.NewReader(r.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			_, _ = io.WriteString(w, strings.ToUpper(line))
			w.(http.Flusher).Flush()
		}
	})
	h := serveHTTP(t, sys, &http.Server{Handler: mux}, nil, sc.lopts...)
	client := tapsClient(t, sys, nil, sc.dopts...)
	ctx := testCtx(t)

	t.Run("response", func(t *testing.T) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.addr+"/stream", nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		for i := 0; i < chunks; i++ {
			line, err := br.ReadString('\n') // before the server writes the next
			require.NoError(t, err)
			require.Equal(t, fmt.Sprintf("chunk %02d\n", i), line)
			next <- struct{}{}
		}
		rest, err := io.ReadAll(br)
		require.NoError(t, err)
		require.Empty(t, rest)
	})

	t.Run("duplex", func(t *testing.T) {
		pr, pw := io.Pipe()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+h.addr+"/duplex", pr)
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		for i := 0; i < chunks; i++ {
			_, err := fmt.Fprintf(pw, "line %02d\n", i)
			require.NoError(t, err)
			line, err := br.ReadString('\n')
			require.NoError(t, err)
			require.Equal(t, fmt.Sprintf("LINE %02d\n", i), line)
		}
		require.NoError(t, pw.Close())
		rest, err := io.ReadAll(br)
		require.NoError(t, err)
		require.Empty(t, rest)
	})
}

// A client that cancels mid-response closes its connection: the server's
// background read sees the end of the stream and cancels the request's
// context. One that cancels mid-request-body makes the handler's body
// read fail.
func TestNetHTTPHuntClientCancel(t *testing.T) { forHTTPStacks(t, testNetHTTPClientCancel) }

func testNetHTTPClientCancel(t *testing.T, sc httpStackCase) {
	sys := newTestSystem(t)
	handlerCtxDone := make(chan error, 1)
	bodyErr := make(chan error, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /forever", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			handlerCtxDone <- context.Cause(r.Context())
		case <-time.After(4 * time.Second):
			handlerCtxDone <- errors.New("the request's context was not cancelled")
		}
	})
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		bodyErr <- err
	})
	h := serveHTTP(t, sys, &http.Server{Handler: mux}, nil, sc.lopts...)
	client := tapsClient(t, sys, nil, sc.dopts...)

	t.Run("mid-response", func(t *testing.T) {
		ctx, cancel := context.WithCancel(testCtx(t))
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.addr+"/forever", nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "first\n", line)
		cancel()
		require.ErrorIs(t, <-handlerCtxDone, context.Canceled)
		waitConn(t, h.closed, 3*time.Second, "the cancelled connection to be closed")
	})

	t.Run("mid-request-body", func(t *testing.T) {
		ctx, cancel := context.WithCancel(testCtx(t))
		defer cancel()
		pr, pw := io.Pipe()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+h.addr+"/upload", pr)
		require.NoError(t, err)
		req.ContentLength = 1 << 20
		done := make(chan error, 1)
		go func() {
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		_, err = pw.Write(make([]byte, 64<<10))
		require.NoError(t, err)
		cancel()
		// the Transport waits for its body writer, which may be reading pr
		_ = pw.CloseWithError(context.Canceled)
		require.Error(t, <-done)
		select {
		case err := <-bodyErr:
			require.Error(t, err, "the handler read a whole body that was cut")
		case <-time.After(4 * time.Second):
			t.Fatal("the handler's body read did not end")
		}
		waitConn(t, h.closed, 3*time.Second, "the cancelled connection to be closed")
	})
}

// Hijack: the handler takes the connection over and speaks a line echo
// protocol on it after a 101, through the bufio.ReadWriter (which holds
// the bytes the client sent right after its request) and the net.Conn.
// Hijacking aborts net/http's background read by moving the read
// deadline to the past, then clears it: the hijacked conn must read on.
func TestNetHTTPHuntHijack(t *testing.T) { forHTTPStacks(t, testNetHTTPHijack) }

func testNetHTTPHijack(t *testing.T, sc httpStackCase) {
	sys := newTestSystem(t)
	handlerErr := make(chan error, 4)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /upgrade", func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			handlerErr <- err
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		if err := brw.Flush(); err != nil {
			handlerErr <- err
			return
		}
		for {
			line, err := brw.ReadString('\n')
			if err == io.EOF {
				handlerErr <- nil
				return
			}
			if err != nil {
				handlerErr <- err
				return
			}
			if _, err := conn.Write([]byte("echo: " + line)); err != nil {
				handlerErr <- err
				return
			}
		}
	})
	h := serveHTTP(t, sys, &http.Server{Handler: mux, ReadHeaderTimeout: time.Second}, nil, sc.lopts...)

	t.Run("raw", func(t *testing.T) {
		c, err := tapsDialContext(sys, sc.dopts...)(testCtx(t), "tcp", h.addr)
		require.NoError(t, err)
		defer c.Close()
		// the first line rides with the request: the server's bufio has it
		_, err = io.WriteString(c, "GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly\n")
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(4*time.Second)))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
		hc := waitConn(t, h.hijacked, 3*time.Second, "StateHijacked")
		require.NotNil(t, hc)
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "echo: early\n", line)
		for i := 0; i < 5; i++ {
			_, err = fmt.Fprintf(c, "msg %d\n", i)
			require.NoError(t, err)
			line, err = br.ReadString('\n')
			require.NoError(t, err)
			require.Equal(t, fmt.Sprintf("echo: msg %d\n", i), line)
		}
		require.NoError(t, c.(interface{ CloseWrite() error }).CloseWrite())
		require.NoError(t, <-handlerErr)
		rest, err := io.ReadAll(br)
		require.NoError(t, err)
		require.Empty(t, rest)
	})

	t.Run("client", func(t *testing.T) {
		client := tapsClient(t, sys, nil, sc.dopts...)
		client.Timeout = 0 // a Timeout wraps the 101's body: it is no longer writable
		req, err := http.NewRequestWithContext(testCtx(t), http.MethodGet, "http://"+h.addr+"/upgrade", nil)
		require.NoError(t, err)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "echo")
		resp, err := client.Do(req)
		require.NoError(t, err)
		require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
		rwc, ok := resp.Body.(io.ReadWriteCloser)
		require.True(t, ok, "a 101's body is not writable")
		br := bufio.NewReader(rwc)
		for i := 0; i < 5; i++ {
			_, err = fmt.Fprintf(rwc, "msg %d\n", i)
			require.NoError(t, err)
			line, err := br.ReadString('\n')
			require.NoError(t, err)
			require.Equal(t, fmt.Sprintf("echo: msg %d\n", i), line)
		}
		require.NoError(t, rwc.Close())
		require.NoError(t, <-handlerErr)
	})
}

// HTTPS with crypto/tls over NetListener and NetConn (tls.NewListener on
// the server, the Transport's TLS on the client), HTTP/1.1 and HTTP/2;
// and HTTP over gotaps' own TLS (security parameters on both sides).
func TestNetHTTPHuntTLS(t *testing.T) {
	pki := newTestPKI(t)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		tlsOn := r.TLS != nil
		fmt.Fprintf(w, "%s tls=%v %d %x", r.Proto, tlsOn, len(body), httpPattern(len(body), 8))
	})
	run := func(t *testing.T, client *http.Client, url, wantProto string, wantTLS bool) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 5; i++ {
					n := (g*5 + i) * 3001
					if g == 0 && i == 0 {
						n = 1 << 20
					}
					resp, err := client.Post(url, "application/octet-stream", bytes.NewReader(httpPattern(n, n)))
					if err != nil {
						errs <- err
						return
					}
					b, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					want := fmt.Sprintf("%s tls=%v %d %x", wantProto, wantTLS, n, httpPattern(n, 8))
					if err != nil || string(b) != want {
						errs <- fmt.Errorf("got %q, %v; want %q", b, err, want)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	}

	for _, tc := range []struct {
		name   string
		protos []string
		h2     bool
		proto  string
	}{
		{"crypto-tls-h1", []string{"http/1.1"}, false, "HTTP/1.1"},
		{"crypto-tls-h2", []string{"h2", "http/1.1"}, true, "HTTP/2.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := newTestSystem(t)
			cfg := &tls.Config{Certificates: []tls.Certificate{pki.server}, NextProtos: tc.protos}
			srv := &http.Server{Handler: handler}
			if tc.h2 {
				srv.Protocols = new(http.Protocols)
				srv.Protocols.SetHTTP1(true)
				srv.Protocols.SetHTTP2(true)
			}
			h := serveHTTP(t, sys, srv, func(l net.Listener) net.Listener { return tls.NewListener(l, cfg) })
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool}, ForceAttemptHTTP2: tc.h2}
			client := tapsClient(t, sys, tr)
			run(t, client, "https://"+h.addr+"/", tc.proto, true)
			t.Logf("%d connections", h.newConns.Load())
		})
	}

	// gotaps' secure stacks: TLS over TCP, and QUIC (one stream per
	// connection), the one chosen when both may be
	for _, tc := range []struct{ name, stack string }{{"gotaps-tls", "tls"}, {"gotaps-quic", "quic"}} {
		t.Run(tc.name, func(t *testing.T) {
			sys := newTestSystem(t)
			stacks := make(chan string, 64)
			srv := &http.Server{Handler: handler, ConnContext: func(ctx context.Context, c net.Conn) context.Context {
				if p, err := c.(*netConn).c.GetPropertiesContext(ctx); err == nil {
					stacks <- p.Stack
				}
				return ctx
			}}
			h := serveHTTP(t, sys, srv, nil, WithProtocols(tc.stack),
				WithSecurityParameters(NewSecurityParameters().SetIdentity(pki.server).SetALPN("http/1.1")))
			client := tapsClient(t, sys, nil, WithProtocols(tc.stack),
				WithSecurityParameters(NewSecurityParameters().SetTrustedCAs(pki.pool).SetALPN("http/1.1")))
			// the security is below net/http here: it sees plain HTTP
			// (r.TLS is nil)
			run(t, client, "http://"+h.addr+"/", "HTTP/1.1", false)
			t.Logf("%d connections", h.newConns.Load())
			require.Equal(t, tc.stack, <-stacks)
		})
	}
}
