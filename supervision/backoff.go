package supervision

import "time"

// Backoff is the re-establishment policy for long-lived connections: after
// a transport failure the connection is established again through the
// racer, waiting Delay(n) before attempt n (1-based), at most MaxAttempts
// times in a row. The zero value of each field takes its default.
type Backoff struct {
	// Initial is the wait before the first attempt (default 100 ms).
	Initial time.Duration
	// Max caps the wait (default 10 s).
	Max time.Duration
	// Multiplier grows the wait after each failed attempt (default 2).
	Multiplier float64
	// MaxAttempts bounds consecutive attempts before the connection gives
	// up with a ConnectionError (default 10).
	MaxAttempts int
}

// Normalized returns b with defaults filled in.
func (b Backoff) Normalized() Backoff {
	if b.Initial <= 0 {
		b.Initial = 100 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 10 * time.Second
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	if !(b.Multiplier >= 1) { // below 1, or NaN
		b.Multiplier = 2
	}
	if b.MaxAttempts <= 0 {
		b.MaxAttempts = 10
	}
	return b
}

// Delay is the wait before attempt n (1-based): Initial x Multiplier^(n-1),
// capped at Max. It is pure.
func (b Backoff) Delay(n int) time.Duration {
	b = b.Normalized()
	d := float64(b.Initial)
	for i := 1; i < n; i++ {
		d *= b.Multiplier
		if d >= float64(b.Max) {
			return b.Max
		}
	}
	return time.Duration(d)
}
