package stacks

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"sync"
	"syscall"
	"time"
)

// Pacer is a token bucket that bounds a byte rate (RFC 9622 maxSendRate /
// maxRecvRate, given in bit/s at the application layer). Tokens are bytes;
// they refill at the rate up to the burst size, and a reservation may take
// the bucket below zero, so a message larger than the burst is allowed and
// simply waits longer: the rate holds over a window, not per message.
//
// Time is passed in (Reserve) or read from time.Now (Wait), so the pure
// part can be tested without a clock. A Pacer is safe for concurrent use.
type Pacer struct {
	mu     sync.Mutex
	rate   float64 // bytes per second; 0 = unlimited
	burst  float64 // bytes
	tokens float64
	last   time.Time
}

// minBurst is the smallest burst a Pacer uses: one full-size Ethernet
// frame.
const minBurst = 1500

// NewPacer returns a Pacer for rateBitsPerSec (0 = unlimited: every
// reservation returns 0). burst is the bucket size in bytes; burst <= 0
// chooses 20 ms worth of the rate, at least 1500 bytes. The bucket starts
// full.
func NewPacer(rateBitsPerSec uint64, burst int) *Pacer {
	p := &Pacer{}
	p.setLocked(rateBitsPerSec, burst)
	p.tokens = p.burst
	return p
}

func (p *Pacer) setLocked(rateBitsPerSec uint64, burst int) {
	p.rate = float64(rateBitsPerSec) / 8
	if burst <= 0 {
		burst = int(math.Min(p.rate/50, math.MaxInt32))
	}
	p.burst = math.Max(float64(burst), minBurst)
}

// SetRate changes the rate from now on (0 = unlimited) and resets the burst
// to its default for the new rate; tokens earned so far at the old rate
// are kept (up to the new burst).
func (p *Pacer) SetRate(now time.Time, rateBitsPerSec uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refillLocked(now)
	p.setLocked(rateBitsPerSec, 0)
	p.tokens = math.Min(p.tokens, p.burst)
}

// Rate returns the rate in bit/s (0 = unlimited).
func (p *Pacer) Rate() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return uint64(p.rate * 8)
}

// Burst returns the bucket size in bytes.
func (p *Pacer) Burst() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return int(p.burst)
}

func (p *Pacer) refillLocked(now time.Time) {
	if p.last.IsZero() {
		p.last = now
		return
	}
	if d := now.Sub(p.last); d > 0 {
		p.tokens = math.Min(p.burst, p.tokens+d.Seconds()*p.rate)
		p.last = now
	}
}

// Reserve takes n bytes from the bucket at time now and returns how long
// the caller must wait before sending (or delivering) them: 0 when the
// bucket held n bytes. The reservation is made either way; callers that
// give up do not get the bytes back. It is pure apart from the Pacer's own
// state.
func (p *Pacer) Reserve(now time.Time, n int) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rate == 0 || n <= 0 {
		return 0
	}
	p.refillLocked(now)
	p.tokens -= float64(n)
	if p.tokens >= 0 {
		return 0
	}
	return time.Duration(-p.tokens / p.rate * float64(time.Second))
}

// Wait reserves n bytes at time.Now and sleeps for the wait Reserve
// returns, or until ctx ends (then it returns ctx.Err()).
func (p *Pacer) Wait(ctx context.Context, n int) error {
	d := p.Reserve(time.Now(), n)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// PacedWriter writes through a Pacer: each Write waits for its bytes before
// writing them. With MaxChunk > 0 a Write is split into pieces of at most
// MaxChunk bytes paced one by one (smooth pacing for byte streams); leave
// it 0 for message transports, where every Write must stay one datagram.
// A PacedWriter is as safe for concurrent use as its Writer; Ctx (nil =
// background) stops the waiting.
type PacedWriter struct {
	W        io.Writer
	P        *Pacer
	MaxChunk int
	Ctx      context.Context
}

// Write paces and writes b; see PacedWriter.
func (w *PacedWriter) Write(b []byte) (int, error) {
	ctx := w.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	written := 0
	for {
		chunk := b
		if w.MaxChunk > 0 && len(chunk) > w.MaxChunk {
			chunk = chunk[:w.MaxChunk]
		}
		if err := w.P.Wait(ctx, len(chunk)); err != nil {
			return written, err
		}
		n, err := w.W.Write(chunk)
		written += n
		b = b[n:]
		switch {
		case err != nil:
			return written, err
		case len(b) == 0:
			return written, nil
		case n == 0:
			return written, io.ErrShortWrite
		}
	}
}

// RateLimitedReader reads no faster than its Pacer allows (RFC 9622
// maxRecvRate): after each Read of n bytes it waits until the bucket paid
// for them, so data leave the kernel's receive buffer at the rate and TCP
// flow control slows the peer down. With MaxRead > 0 each Read asks for at
// most MaxRead bytes (for byte streams); leave it 0 for message transports
// so a datagram is never cut. Ctx (nil = background) ends the waiting: a
// Read whose wait is cut short returns its data at once. Not safe for
// concurrent Reads.
type RateLimitedReader struct {
	R       io.Reader
	P       *Pacer
	MaxRead int
	Ctx     context.Context
}

// Read reads from R and then waits for the bytes read; see
// RateLimitedReader.
func (r *RateLimitedReader) Read(b []byte) (int, error) {
	if r.MaxRead > 0 && len(b) > r.MaxRead {
		b = b[:r.MaxRead]
	}
	n, err := r.R.Read(b)
	if n > 0 {
		ctx := r.Ctx
		if ctx == nil {
			ctx = context.Background()
		}
		_ = r.P.Wait(ctx, n)
	}
	return n, err
}

// MinRateWatch tells when a connection moves data slower than RFC 9622
// minSendRate / minRecvRate over whole intervals. Only intervals during
// which the connection was backlogged the whole time (the application had
// more to send, or was waiting to receive) count: an idle application is
// not a slow path. The zero value with Min 0 never reports. It is pure and
// not safe for concurrent use.
type MinRateWatch struct {
	// Min is the minimum rate in bit/s; 0 disables the watch.
	Min uint64
	// Interval is the measuring interval; 0 means 1 s (the RFC's).
	Interval time.Duration

	start   time.Time
	bytes   uint64
	idle    bool
	started bool
}

// Observe records that n bytes moved at time now and whether more data were
// waiting afterwards (backlogged). When an interval ended at now, it
// returns that interval's rate in bit/s and ended = true; below is true
// when the connection was backlogged all through the interval and the rate
// fell short of Min. Observe should also be called with n = 0 from a
// periodic tick so a stalled connection is noticed.
func (w *MinRateWatch) Observe(now time.Time, n int, backlogged bool) (rate uint64, ended, below bool) {
	iv := w.Interval
	if iv <= 0 {
		iv = time.Second
	}
	if !w.started {
		w.started = true
		w.start = now
	}
	if el := now.Sub(w.start); el >= iv {
		rate = uint64(float64(w.bytes*8) / el.Seconds())
		ended = true
		below = w.Min > 0 && !w.idle && rate < w.Min
		w.start, w.bytes, w.idle = now, 0, false
	}
	if n > 0 {
		w.bytes += uint64(n)
	}
	if !backlogged {
		w.idle = true
	}
	return rate, ended, below
}

// Pacing is implemented by Transports whose kernel can pace the sending
// itself (TCP and TLS: SO_MAX_PACING_RATE). Safe for concurrent use.
type Pacing interface {
	// PacingRate caps the socket's sending rate at bitsPerSec (0 =
	// unlimited), rounded down to whole bytes per second. Read the value
	// in effect back with TransportInfo.MaxPacingRate. The error wraps
	// ErrPacingUnsupported when the kernel lacks the option (always
	// outside Linux).
	PacingRate(bitsPerSec uint64) error
}

// ErrPacingUnsupported is wrapped by Pacing.PacingRate when the kernel has
// no SO_MAX_PACING_RATE.
var ErrPacingUnsupported = errors.New("kernel does not offer SO_MAX_PACING_RATE")

// PacingRate sets SO_MAX_PACING_RATE; see Pacing.
func (t *tcpTransport) PacingRate(bitsPerSec uint64) error {
	return setPacingRate(t.TCPConn, bitsPerSec)
}

// PacingRate sets SO_MAX_PACING_RATE on the TCP socket under TLS; see
// Pacing.
func (t *tlsTransport) PacingRate(bitsPerSec uint64) error { return setPacingRate(t.tcp, bitsPerSec) }

// pacingRateOf reads SO_MAX_PACING_RATE of a connection (tests, Info).
func pacingRateOf(c net.Conn) (uint64, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, errors.ErrUnsupported
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var v uint64
	var serr error
	err = rc.Control(func(fd uintptr) { v, serr = maxPacingRate(int(fd)) })
	return v, errors.Join(err, serr)
}
