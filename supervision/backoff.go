package supervision

import "time"

// Backoff is the re-establishment policy for long-lived connections: after
// a transport failure the connection is established again through the
// racer, waiting Delay(n) before attempt n (1-based), at most MaxAttempts
// times in a row. An attempt that succeeds ends the row only once its
// transport has stayed up StableAfter: a peer that accepts and drops the
// connection at once makes it wait longer each time and, after
// MaxAttempts, end, instead of cycling at the Initial wait for ever. The
// zero value of each field takes its default.
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
	// StableAfter is how long a re-established transport must stay up for
	// the row of attempts that brought it up to end (default Max, 10 s):
	// when it is lost sooner, the next attempt continues the row (attempt
	// n+1, after Delay(n+1)), and counts against MaxAttempts. Negative: the
	// row ends at each successful attempt, however soon its transport is
	// lost.
	StableAfter time.Duration
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
	if b.StableAfter == 0 {
		b.StableAfter = b.Max
	}
	return b
}

// Carried is the number of consecutive attempts that the re-establishment
// of a transport lost after up (the time it was up, since the attempt that
// made it succeeded) continues from: 0 once it stayed up StableAfter,
// else attempts. It is pure.
func (b Backoff) Carried(attempts int, up time.Duration) int {
	b = b.Normalized()
	if b.StableAfter < 0 || up >= b.StableAfter {
		return 0
	}
	return attempts
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
