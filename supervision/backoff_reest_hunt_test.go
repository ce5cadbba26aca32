package supervision

import (
	"math"
	"testing"
	"time"
)

// BUG (reest hunt): a NaN Multiplier passed Normalized (NaN < 1 is false)
// and made every Delay after the first NaN converted to a Duration (a
// negative wait on amd64): the backoff vanished. It takes the default 2, as
// any other multiplier below 1 does.
func TestReestHuntBackoffNaNMultiplierTakesTheDefault(t *testing.T) {
	b := Backoff{Initial: 10 * time.Millisecond, Max: time.Second, Multiplier: math.NaN()}
	if got := b.Normalized().Multiplier; got != 2 {
		t.Errorf("Normalized().Multiplier = %v; want 2", got)
	}
	for n, want := range map[int]time.Duration{1: 10 * time.Millisecond, 2: 20 * time.Millisecond, 3: 40 * time.Millisecond} {
		if got := b.Delay(n); got != want {
			t.Errorf("Delay(%d) = %v; want %v", n, got, want)
		}
	}
}

// Untested-but-correct (reest hunt): an infinite Multiplier waits Max from
// the second attempt on, and Delay never exceeds Max whatever n.
func TestReestHuntBackoffDelayBounds(t *testing.T) {
	b := Backoff{Initial: 10 * time.Millisecond, Max: time.Second, Multiplier: math.Inf(1)}
	if got := b.Delay(2); got != time.Second {
		t.Errorf("Delay(2) = %v; want 1s", got)
	}
	d := Backoff{}
	for n := 0; n <= 100; n++ {
		if got := d.Delay(n); got < 100*time.Millisecond || got > 10*time.Second {
			t.Errorf("Delay(%d) = %v: out of [Initial, Max]", n, got)
		}
	}
}
