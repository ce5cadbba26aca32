package main

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/gotaps/gotaps/taps"
)

// server is the set of connections a listening tapscat serves.
type server struct {
	mu       sync.Mutex
	conns    map[*taps.Connection]struct{}
	closing  bool
	aborting bool // tapscat ends on a failure, a timeout or an interrupt: reported once, by listen
	failed   bool
}

// add registers c; false once the server is closing.
func (s *server) add(c *taps.Connection) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *server) remove(c *taps.Connection, failed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	s.failed = s.failed || failed
}

// aborted reports whether closeAll aborted the connections.
func (s *server) aborted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.aborting
}

func (s *server) snapshot() []*taps.Connection {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*taps.Connection, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

// closeAll stops taking connections and closes (or aborts) the open ones.
func (s *server) closeAll(abort bool) {
	s.mu.Lock()
	s.closing, s.aborting = true, abort
	s.mu.Unlock()
	for _, c := range s.snapshot() {
		if abort {
			c.Abort()
		} else {
			_ = c.Close()
		}
	}
}

// listen runs a Listener: every connection is served concurrently; once
// the first one arrives, each message read from stdin is sent to every
// open connection.
func (t *tapscat) listen(ctx context.Context, pre *taps.Preconnection) int {
	ln, err := pre.Listen(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return t.ctxExit(ctx)
		}
		return t.fail(err)
	}
	seen := map[string]bool{} // a TCP and a UDP socket may share an address (TLS and QUIC)
	for _, e := range ln.LocalEndpoints() {
		if a := e.String(); !seen[a] {
			seen[a] = true
			t.verbosef("listening on %s", a)
		}
	}

	s := &server{conns: map[*taps.Connection]struct{}{}}
	var wg sync.WaitGroup
	first := make(chan struct{})
	acceptDone := make(chan error, 1)
	go func() {
		var once sync.Once
		for {
			c, err := ln.Accept(ctx)
			if err != nil {
				acceptDone <- err
				return
			}
			if !s.add(c) {
				_ = c.Close()
				continue
			}
			once.Do(func() { close(first) })
			wg.Add(1)
			go func() {
				defer wg.Done()
				t.serve(ctx, c, s)
			}()
		}
	}()
	stdinDone := make(chan error, 1)
	quit := make(chan struct{})
	defer close(quit)
	go func() {
		select {
		case <-first:
		case <-quit:
			return
		}
		stdinDone <- t.pump(func(b []byte) error {
			for _, c := range s.snapshot() {
				if err := c.Send(ctx, b, nil); err != nil && c.State() == taps.StateEstablished {
					return err
				}
			}
			return nil
		})
	}()

	reached := t.count.reached
	if t.count.limit == 0 {
		reached = nil
	}
	stdinEnded := false
	var failure error
	for failure == nil && ctx.Err() == nil && (t.count.limit == 0 || !stdinEnded || !t.count.done()) {
		select {
		case err := <-stdinDone:
			stdinDone, stdinEnded, failure = nil, true, err
		case <-reached:
			reached = nil
		case err := <-acceptDone:
			acceptDone = nil
			failure = fmt.Errorf("accept: %w", err)
		case <-ctx.Done():
		}
	}

	ln.Stop()
	s.closeAll(ctx.Err() != nil || failure != nil)
	if acceptDone != nil {
		<-acceptDone
	}
	wg.Wait()
	<-ln.Done()
	switch {
	case ctx.Err() != nil:
		return t.ctxExit(ctx)
	case failure != nil:
		return t.fail(failure)
	case s.failed:
		return exitFailure
	}
	return exitOK
}

// serve runs one received connection until it has ended; a connection
// error is reported on stderr and makes the exit status 1.
func (t *tapscat) serve(ctx context.Context, c *taps.Connection, s *server) {
	peer := t.remote(ctx, c)
	t.verbosef("connection from %s", peer)
	err := t.receiveLoop(ctx, c, t.framed || overDatagrams(ctx, c))
	switch {
	case errors.Is(err, taps.ErrClosed):
		// the peer's end of stream (or the connection ended): what was
		// queued is sent, then this side ends too
		_ = c.Close()
	case ctx.Err() == nil:
		c.Abort()
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
	}
	if ctx.Err() != nil || s.aborted() {
		// tapscat aborted it on its way out: listen reports why, once
		s.remove(c, false)
		return
	}
	failed := true
	switch cerr := c.Err(); {
	case cerr != nil:
		report(t.errw, fmt.Errorf("connection from %s: %w", peer, cerr))
	case !errors.Is(err, taps.ErrClosed): // receiveLoop always ends with an error
		report(t.errw, fmt.Errorf("connection from %s: %w", peer, err))
	default:
		failed = false
		t.verbosef("connection from %s closed", peer)
	}
	s.remove(c, failed)
}
