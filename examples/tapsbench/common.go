package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/taps"
)

// Implementation names used in the rows.
const (
	implTaps  = "gotaps"
	implRaw   = "raw-tcp"
	implActor = "protoactor"
)

const msg64 = 64

// --- gotaps side (public API only) ---

// gotapsEnv is one fresh System with a length-prefix Listener on 127.0.0.1
// whose every received connection is handed to handle on its own goroutine.
type gotapsEnv struct {
	sys  *taps.System
	ln   *taps.Listener
	port uint16
	pre  *taps.Preconnection // reused for every dial, as RFC 9622 allows
	once sync.Once
}

func newGotapsEnv(ctx context.Context, handle func(*taps.Connection)) (*gotapsEnv, error) {
	return listenEnv(ctx, handle, "gotaps Listen", noSecurity())
}

// listenEnv makes a System and, when handle is not nil, a length-prefix
// Listener on 127.0.0.1 with opts, every received connection going to
// handle on its own goroutine.
func listenEnv(ctx context.Context, handle func(*taps.Connection), what string, opts ...taps.PreconnectionOption) (*gotapsEnv, error) {
	sys := taps.NewSystem()
	e := &gotapsEnv{sys: sys}
	if handle == nil {
		return e, nil
	}
	opts = append([]taps.PreconnectionOption{taps.WithSystem(sys),
		taps.WithLocalEndpoint(taps.NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))}, opts...)
	pre := taps.NewPreconnection(opts...)
	pre.AddFramer(framers.NewLengthPrefix())
	ln, err := pre.Listen(ctx)
	if err != nil {
		_ = e.close()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	ln.OnConnectionReceived(func(_ *taps.Listener, c *taps.Connection) { go handle(c) })
	e.ln = ln
	addr, _ := ln.LocalEndpoints()[0].Addr()
	e.port = addr.Port()
	return e, nil
}

// noSecurity pins plain TCP: the raw peers have no TLS either.
func noSecurity() taps.PreconnectionOption {
	return taps.WithSecurityParameters(taps.NewDisabledSecurityParameters())
}

// close shuts the System down (10 s at most).
func (e *gotapsEnv) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.sys.Shutdown(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("gotaps System.Shutdown: %w", err)
		}
		return nil
	case <-time.After(15 * time.Second):
		return errors.New("gotaps System.Shutdown hung for 15 s")
	}
}

// preconn returns a client Preconnection with a length-prefix framer whose
// remote endpoints are 127.0.0.1:port for every port, raced in that order.
func (e *gotapsEnv) preconn(opts []taps.PreconnectionOption, ports ...uint16) *taps.Preconnection {
	all := []taps.PreconnectionOption{taps.WithSystem(e.sys), noSecurity()}
	for _, p := range ports {
		all = append(all, taps.WithRemoteEndpoint(taps.NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(p)))
	}
	all = append(all, opts...)
	pre := taps.NewPreconnection(all...)
	pre.AddFramer(framers.NewLengthPrefix())
	return pre
}

func (e *gotapsEnv) dial(ctx context.Context) (*taps.Connection, error) {
	e.once.Do(func() { e.pre = e.preconn(nil, e.port) })
	c, err := e.pre.Initiate(ctx)
	if err != nil {
		return nil, fmt.Errorf("gotaps Initiate: %w", err)
	}
	return c, nil
}

// gotapsEcho sends every received message back (blocking Receive/Send).
func gotapsEcho(c *taps.Connection) {
	ctx := context.Background()
	defer c.Close()
	for {
		m, err := c.Receive(ctx)
		if err != nil {
			return
		}
		if err := c.Send(ctx, m.Data, nil); err != nil {
			return
		}
		m.Release() // sent: the Message may take the next one, as a raw server reuses its buffer
	}
}

// closeWait closes c gracefully and waits for Closed (bounded by ctx).
func closeWait(ctx context.Context, c *taps.Connection) error {
	_ = c.Close()
	select {
	case <-c.Done():
		return nil
	case <-ctx.Done():
		c.Abort()
		return fmt.Errorf("connection %d not Closed after Close: %w", c.ID(), ctx.Err())
	}
}

// --- raw side: net TCP, 4-byte big-endian length prefix, goroutine per conn ---

type rawServer struct {
	ln    net.Listener
	port  uint16
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// newRawServer listens on 127.0.0.1:0 and runs handle on a goroutine per
// accepted connection (nil handle: accept and close).
func newRawServer(handle func(net.Conn)) (*rawServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &rawServer{ln: ln, port: uint16(ln.Addr().(*net.TCPAddr).Port), conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if handle == nil {
				c.Close()
				continue
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				handle(c)
				c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
		}
	}()
	return s, nil
}

func (s *rawServer) addr() string { return s.ln.Addr().String() }

func (s *rawServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// frame returns header+body in one buffer (one Write per message).
func frame(body []byte) []byte {
	b := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(b, uint32(len(body)))
	copy(b[4:], body)
	return b
}

// readFrame reads one length-prefixed message into buf (grown if needed).
func readFrame(r io.Reader, hdr []byte, buf []byte) ([]byte, error) {
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:4]))
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err := io.ReadFull(r, buf)
	return buf, err
}

// rawEcho echoes every length-prefixed message (buffered reads, one Write
// per reply).
func rawEcho(c net.Conn) { rawEchoRW(c) }

// rawEchoRW is rawEcho on any byte stream (a TCP connection, a QUIC stream).
func rawEchoRW(c io.ReadWriter) {
	r := bufio.NewReaderSize(c, 64<<10)
	hdr := make([]byte, 4)
	var buf, out []byte
	for {
		m, err := readFrame(r, hdr, buf)
		if err != nil {
			return
		}
		buf = m
		out = append(out[:0], 0, 0, 0, 0)
		binary.BigEndian.PutUint32(out, uint32(len(m)))
		out = append(out, m...)
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// --- process state ---

func countFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// userMem is live heap plus goroutine stacks after a full GC.
func userMem() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc + ms.StackInuse
}

// settle waits (at most d) until the goroutine count is at most want.
func settle(want int, d time.Duration) int {
	deadline := time.Now().Add(d)
	for {
		n := runtime.NumGoroutine()
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// withCtx runs f and gives up when ctx ends (f keeps running: a hang).
func withCtx(ctx context.Context, what string, f func() error) error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%s: hung until the workload timeout (%w)", what, ctx.Err())
	}
}
