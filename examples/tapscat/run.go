package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gotaps/gotaps/taps"
)

// shutdownGrace bounds the System's shutdown once tapscat is done.
const shutdownGrace = 5 * time.Second

// timeoutError is the cause of the --timeout context.
type timeoutError struct{ d time.Duration }

func (e *timeoutError) Error() string { return fmt.Sprintf("timeout after %s", e.d) }

// tapscat is one run: the parsed command line, its System and its
// standard streams.
type tapscat struct {
	cfg    *config
	sys    *taps.System
	stdin  io.Reader
	out    *sink
	errw   io.Writer
	count  *counter
	framed bool
}

// run is tapscat's main: it parses args, runs the connection or listener
// and returns the exit status. Errors go to stderr as one line each. It
// uses a System of its own and shuts it down before returning; the only
// goroutine that may outlive it is the one reading stdin, when stdin has
// not ended (it stops after its next Read). ctx ends the run as an
// interrupt (exit status 130).
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	errw := &lockedWriter{w: stderr}
	cfg, err := parseArgs(args, errw)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		report(errw, err)
		return exitUsage
	}
	if cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, cfg.timeout, &timeoutError{cfg.timeout})
		defer cancel()
	}
	var opts []taps.SystemOption
	if cfg.trace {
		opts = append(opts, taps.WithTraceWriter(errw))
	}
	t := &tapscat{
		cfg:    cfg,
		sys:    taps.NewSystem(opts...),
		stdin:  stdin,
		out:    &sink{w: &lockedWriter{w: stdout}, framed: cfg.framer != "none"},
		errw:   errw,
		count:  newCounter(cfg.count),
		framed: cfg.framer != "none",
	}
	code := t.run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := t.sys.Shutdown(sctx); err != nil && code == exitOK {
		report(errw, fmt.Errorf("shutdown: %w", err))
		code = exitFailure
	}
	return code
}

func (t *tapscat) run(ctx context.Context) int {
	pre, err := t.cfg.preconnection(t.sys)
	if err != nil {
		report(t.errw, err)
		var ue *usageError
		if errors.As(err, &ue) {
			return exitUsage
		}
		return exitFailure
	}
	if t.cfg.listen {
		return t.listen(ctx, pre)
	}
	return t.initiate(ctx, pre)
}

// report writes err to w as one line.
func report(w io.Writer, err error) {
	msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", " ")), " ")
	fmt.Fprintf(w, "tapscat: %s\n", msg)
}

func (t *tapscat) verbosef(format string, args ...any) {
	if t.cfg.verbose {
		fmt.Fprintf(t.errw, "tapscat: "+format+"\n", args...)
	}
}

// fail reports err and returns the failure status.
func (t *tapscat) fail(err error) int {
	report(t.errw, err)
	return exitFailure
}

// ctxExit reports why ctx ended: the --timeout (status 1) or an interrupt
// (130).
func (t *tapscat) ctxExit(ctx context.Context) int {
	cause := context.Cause(ctx)
	var te *timeoutError
	switch {
	case errors.As(cause, &te):
		return t.fail(te)
	case errors.Is(cause, context.Canceled):
		report(t.errw, errors.New("interrupted"))
		return exitInterrupted
	}
	return t.fail(cause)
}

// pump sends every message read from stdin with send, until stdin ends
// (nil) or reading or sending fails.
func (t *tapscat) pump(send func([]byte) error) error {
	src := newSource(t.stdin, t.framed)
	for {
		data, err := src.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading stdin: %w", err)
		}
		if err := send(data); err != nil {
			return err
		}
	}
}

// receiveLoop prints (and with --echo sends back) every message conn
// receives, until Receive fails: with an error unwrapping to
// taps.ErrClosed once the peer has ended its stream (or the connection has
// ended) and everything received was read. Messages beyond --count are
// read and dropped. messages: conn carries messages (a framer, or a
// datagram stack, where an empty datagram is a message too), not a byte
// stream, whose empty end is not one.
func (t *tapscat) receiveLoop(ctx context.Context, conn *taps.Connection, messages bool) error {
	for {
		m, err := conn.Receive(ctx)
		if err != nil {
			return err
		}
		if !messages && len(m.Data) == 0 {
			continue // the empty end of a byte stream
		}
		if !t.count.take() {
			continue
		}
		if err := t.out.print(m.Data); err != nil {
			return fmt.Errorf("writing stdout: %w", err)
		}
		if t.cfg.echo {
			if err := conn.Send(ctx, m.Data, nil); err != nil && conn.State() == taps.StateEstablished {
				return fmt.Errorf("echo: %w", err)
			}
		}
		t.count.handle()
	}
}

// outcome turns the end of a connection into an exit status: the
// connection's error, then the receive loop's, then a shortfall of --count.
func (t *tapscat) outcome(conn *taps.Connection, recvErr error) int {
	if err := conn.Err(); err != nil {
		return t.fail(err)
	}
	if recvErr != nil && !errors.Is(recvErr, taps.ErrClosed) {
		return t.fail(recvErr)
	}
	if !t.count.done() {
		return t.fail(fmt.Errorf("connection closed after %d of %d messages", t.count.n.Load(), t.count.limit))
	}
	return exitOK
}

// initiate runs an initiated connection: stdin to the connection, the
// connection to stdout.
//
// When stdin ends on a byte stream, tapscat sends an empty Message marked
// final (RFC 9622 §9.1.3.5): the peer sees the end of the stream at once
// while tapscat goes on printing what the peer sends until the peer closes
// too (netcat's -N), unless --count messages arrive first. When the peer
// ends its stream first, tapscat closes the connection (what was queued is
// still sent) and exits, as netcat does. With a framer
// an empty final Message would reach the peer as one more (empty) message,
// so there the end of stdin leads straight to Close once --count messages
// have arrived. So it does on a datagram stack (UDP, UDP-Lite) without a
// framer: it has no end of stream, so the final Message would reach the
// peer as an empty datagram, and no peer ever ends its stream.
func (t *tapscat) initiate(ctx context.Context, pre *taps.Preconnection) int {
	conn, err := pre.Initiate(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return t.ctxExit(ctx)
		}
		return t.fail(err)
	}
	if t.cfg.verbose {
		t.verbosef("connected to %s", t.remote(ctx, conn))
	}
	// messages, not a byte stream: the end of stdin closes
	messages := t.framed || overDatagrams(ctx, conn)

	recvDone := make(chan error, 1)
	go func() { recvDone <- t.receiveLoop(ctx, conn, messages) }()
	stdinDone := make(chan error, 1)
	go func() {
		err := t.pump(func(b []byte) error { return conn.Send(ctx, b, nil) })
		if err == nil && !messages {
			err = conn.Send(ctx, nil, taps.NewMessageContext().Final(true))
		}
		stdinDone <- err
	}()

	reached := t.count.reached
	if t.count.limit == 0 {
		reached = nil
	}
	// a byte stream without --count ends when the peer closes (recvDone)
	closeAtEnd := messages || t.count.limit > 0
	stdinEnded := false
	for !stdinEnded || !t.count.done() || !closeAtEnd {
		select {
		case err := <-stdinDone:
			stdinDone = nil
			if err != nil && conn.State() == taps.StateEstablished {
				conn.Abort()
				<-recvDone
				return t.fail(err)
			}
			stdinEnded = true // or the connection is ending: recvDone follows
		case <-reached:
			reached = nil
		case err := <-recvDone:
			// the peer ended its stream, or the connection failed
			if errors.Is(err, taps.ErrClosed) {
				// as netcat: what was queued is sent, then this side
				// ends too (the peer's end of stream alone only
				// half-closes the connection)
				_ = conn.Close()
			}
			select {
			case <-conn.Done():
			case <-ctx.Done():
				return t.ctxExit(ctx)
			}
			return t.outcome(conn, err)
		case <-ctx.Done():
			conn.Abort()
			<-recvDone
			return t.ctxExit(ctx)
		}
	}
	_ = conn.Close()
	var recvErr error
	select {
	case recvErr = <-recvDone:
	case <-ctx.Done():
		conn.Abort()
		<-recvDone
		return t.ctxExit(ctx)
	}
	select {
	case <-conn.Done():
	case <-ctx.Done():
		conn.Abort()
		return t.ctxExit(ctx)
	}
	return t.outcome(conn, recvErr)
}

// overDatagrams reports whether conn runs over a datagram stack (UDP,
// UDP-Lite).
func overDatagrams(ctx context.Context, conn *taps.Connection) bool {
	p, err := conn.GetPropertiesContext(ctx)
	return err == nil && (p.Stack == "udp" || p.Stack == "udplite")
}

// remote names conn's peer in messages.
func (t *tapscat) remote(ctx context.Context, conn *taps.Connection) string {
	p, err := conn.GetPropertiesContext(ctx)
	if err != nil || p.Remote == nil {
		return fmt.Sprintf("connection %d", conn.ID())
	}
	return p.Remote.String()
}
