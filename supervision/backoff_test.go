package supervision

import (
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		b    Backoff
		n    int
		want time.Duration
	}{
		{Backoff{}, 1, 100 * ms},
		{Backoff{}, 2, 200 * ms},
		{Backoff{}, 4, 800 * ms},
		{Backoff{}, 20, 10 * time.Second},
		{Backoff{Initial: 10 * ms, Max: 50 * ms, Multiplier: 3}, 1, 10 * ms},
		{Backoff{Initial: 10 * ms, Max: 50 * ms, Multiplier: 3}, 2, 30 * ms},
		{Backoff{Initial: 10 * ms, Max: 50 * ms, Multiplier: 3}, 3, 50 * ms},
		{Backoff{Initial: time.Second, Max: ms}, 1, time.Second}, // Max below Initial is raised
	}
	for i, tt := range tests {
		if got := tt.b.Delay(tt.n); got != tt.want {
			t.Errorf("#%d: Delay(%d) = %v; want %v", i, tt.n, got, tt.want)
		}
	}
	if got := (Backoff{}).Normalized().MaxAttempts; got != 10 {
		t.Errorf("default MaxAttempts = %d; want 10", got)
	}
}
