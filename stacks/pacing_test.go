package stacks

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPacerReserve(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	type step struct {
		at   time.Duration // since t0
		n    int
		wait time.Duration
	}
	tests := []struct {
		name  string
		rate  uint64 // bit/s
		burst int
		steps []step
	}{
		{"unlimited never waits", 0, 0, []step{{0, 1 << 30, 0}, {0, 1 << 30, 0}}},
		{"burst is free, then the rate", 8000, 1500, []step{ // 1000 B/s
			{0, 1500, 0}, {0, 1000, time.Second}, {0, 500, 1500 * ms},
		}},
		{"tokens refill with time", 8000, 1500, []step{
			{0, 1500, 0}, {500 * ms, 500, 0}, {500 * ms, 100, 100 * ms},
		}},
		{"refill stops at the burst", 8000, 1500, []step{
			{0, 1500, 0}, {time.Hour, 1500, 0}, {time.Hour, 1, ms},
		}},
		{"a message larger than the burst waits for its excess", 8000, 1500, []step{
			{0, 3500, 2 * time.Second}, {2 * time.Second, 1000, time.Second},
		}},
		{"time going backwards earns nothing", 8000, 1500, []step{
			{time.Second, 1500, 0}, {0, 1000, time.Second},
		}},
		{"zero bytes never wait", 8000, 1500, []step{{0, 1500, 0}, {0, 0, 0}, {0, 1, ms}}},
		{"default burst: 20 ms of the rate", 8_000_000, 0, []step{{0, 20_000, 0}, {0, 1000, ms}}},
		{"default burst at least 1500 bytes", 8000, 0, []step{{0, 1500, 0}, {0, 1, ms}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPacer(tt.rate, tt.burst)
			require.Equal(t, tt.rate, p.Rate())
			for i, s := range tt.steps {
				got := p.Reserve(t0.Add(s.at), s.n)
				require.InDelta(t, float64(s.wait), float64(got), float64(time.Microsecond), "step %d", i)
			}
		})
	}
}

func TestPacerSetRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := NewPacer(8000, 1500)
	require.Zero(t, p.Reserve(t0, 1500))
	p.SetRate(t0.Add(time.Second), 16000) // 1000 B earned at the old rate
	require.Equal(t, uint64(16000), p.Rate())
	require.Equal(t, 1500, p.Burst())
	require.Zero(t, p.Reserve(t0.Add(time.Second), 1000))
	require.Equal(t, 500*time.Millisecond, p.Reserve(t0.Add(time.Second), 1000))
	p.SetRate(t0.Add(time.Second), 0)
	require.Zero(t, p.Reserve(t0.Add(time.Second), 1<<20))
}

// TestPacedWriterSynctest writes 1 MB at 800 kbit/s (100 kB/s) through a
// PacedWriter in a synctest bubble: the fake clock must advance 10 s minus
// the burst's share.
func TestPacedWriterSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var sink bytes.Buffer
		p := NewPacer(800_000, 10_000)
		w := &PacedWriter{W: &sink, P: p, MaxChunk: 4096}
		start := time.Now()
		data := make([]byte, 1_000_000)
		n, err := w.Write(data)
		require.NoError(t, err)
		require.Equal(t, len(data), n)
		require.Equal(t, len(data), sink.Len())
		require.Equal(t, 9900*time.Millisecond, time.Since(start))
	})
}

func TestPacedWriterStopsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var sink bytes.Buffer
		w := &PacedWriter{W: &sink, P: NewPacer(8000, 1500), Ctx: ctx}
		n, err := w.Write(make([]byte, 1500))
		require.NoError(t, err)
		require.Equal(t, 1500, n)
		_, err = w.Write(make([]byte, 10_000)) // would wait 10 s
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, 1500, sink.Len())
	})
}

// TestRateLimitedReaderSynctest reads 500 kB that are all available at once
// through a reader limited to 400 kbit/s (50 kB/s): it takes 10 s of fake
// time, minus the burst.
func TestRateLimitedReaderSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		go func() {
			_, _ = a.Write(make([]byte, 500_000))
			_ = a.Close()
		}()
		r := &RateLimitedReader{R: b, P: NewPacer(400_000, 5000), MaxRead: 5000}
		start := time.Now()
		got, err := io.ReadAll(r)
		require.NoError(t, err)
		require.Len(t, got, 500_000)
		require.Equal(t, 9900*time.Millisecond, time.Since(start))
		_ = b.Close()
	})
}

func TestMinRateWatch(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	w := MinRateWatch{Min: 8000} // 1000 B/s
	_, ended, _ := w.Observe(at(0), 500, true)
	require.False(t, ended)
	rate, ended, below := w.Observe(at(time.Second), 0, true)
	require.True(t, ended)
	require.True(t, below, "backlogged all interval and only 4000 bit/s")
	require.Equal(t, uint64(4000), rate)
	// fast enough
	w.Observe(at(1500*time.Millisecond), 2000, true)
	rate, ended, below = w.Observe(at(2*time.Second), 0, true)
	require.True(t, ended)
	require.False(t, below)
	require.Equal(t, uint64(16000), rate)
	// slow, but the application was idle for part of it
	w.Observe(at(2500*time.Millisecond), 100, false)
	_, ended, below = w.Observe(at(3*time.Second), 0, true)
	require.True(t, ended)
	require.False(t, below)
	// disabled watch never reports
	var off MinRateWatch
	off.Observe(at(0), 0, true)
	_, ended, below = off.Observe(at(time.Second), 0, true)
	require.True(t, ended)
	require.False(t, below)
}

func TestTCPPacingRateReadBack(t *testing.T) {
	ctx := testCtx(t)
	ln, err := TCP().Listen(ctx, Options{Local: loopback4})
	require.NoError(t, err)
	defer ln.Close()
	c, err := TCP().Dial(ctx, addrPort(t, ln.Addr()), Options{})
	require.NoError(t, err)
	defer c.Close()
	s, err := ln.Accept()
	require.NoError(t, err)
	defer s.Close()

	info, err := c.(SocketInfo).Info()
	require.NoError(t, err)
	require.Zero(t, info.MaxPacingRate, "unlimited by default")
	p, ok := c.(Pacing)
	require.True(t, ok, "TCP transports implement Pacing")
	err = p.PacingRate(8_000_000)
	if err != nil {
		require.ErrorIs(t, err, ErrPacingUnsupported)
		t.Skip("kernel lacks SO_MAX_PACING_RATE:", err)
	}
	info, err = c.(SocketInfo).Info()
	require.NoError(t, err)
	require.Equal(t, uint64(8_000_000), info.MaxPacingRate)
	got, err := pacingRateOf(c)
	require.NoError(t, err)
	require.Equal(t, uint64(8_000_000), got)
	require.NoError(t, p.PacingRate(0))
	info, err = c.(SocketInfo).Info()
	require.NoError(t, err)
	require.Zero(t, info.MaxPacingRate)
}

// TestPacedTCPRateOverLoopback paces a loopback TCP sender to 8 Mbit/s for
// about 3 s with a Pacer in the write loop and checks the rate the receiver
// sees is within 10 %.
func TestPacedTCPRateOverLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("3 s pacing measurement skipped in -short mode")
	}
	const rate = 8_000_000     // bit/s
	const total = rate / 8 * 3 // 3 s of data
	ctx := testCtx(t)
	ln, err := TCP().Listen(ctx, Options{Local: loopback4})
	require.NoError(t, err)
	defer ln.Close()
	c, err := TCP().Dial(ctx, addrPort(t, ln.Addr()), Options{})
	require.NoError(t, err)
	defer c.Close()
	s, err := ln.Accept()
	require.NoError(t, err)
	defer s.Close()

	sendErr := make(chan error, 1)
	go func() {
		w := &PacedWriter{W: c, P: NewPacer(rate, 0), MaxChunk: 8192, Ctx: ctx}
		_, err := w.Write(make([]byte, total))
		sendErr <- err
	}()
	buf := make([]byte, 64<<10)
	var got int
	var first, last time.Time
	for got < total {
		n, err := s.Read(buf)
		require.NoError(t, err)
		if got == 0 {
			first = time.Now()
		}
		got += n
		last = time.Now()
	}
	require.NoError(t, <-sendErr)
	el := last.Sub(first)
	measured := float64(got*8) / el.Seconds()
	t.Logf("received %d bytes in %v: %.0f bit/s (set %d)", got, el, measured, rate)
	require.InEpsilon(t, float64(rate), measured, 0.10)
}
