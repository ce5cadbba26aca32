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

func TestBackoffCarried(t *testing.T) {
	s := time.Second
	tests := []struct {
		name     string
		b        Backoff
		attempts int
		up       time.Duration
		want     int
	}{
		{"default: up less than Max carries the row", Backoff{}, 3, 9 * s, 3},
		{"default: up Max ends the row", Backoff{}, 3, 10 * s, 0},
		{"default follows Max", Backoff{Max: time.Minute}, 2, 30 * s, 2},
		{"default follows a Max raised to Initial", Backoff{Initial: time.Minute, Max: s}, 2, 30 * s, 2},
		{"set: shorter than Max", Backoff{StableAfter: s}, 4, s, 0},
		{"set: just short", Backoff{StableAfter: s}, 4, s - 1, 4},
		{"set: longer than Max", Backoff{StableAfter: time.Hour}, 4, time.Minute, 4},
		{"negative: every success ends the row", Backoff{StableAfter: -1}, 4, 0, 0},
		{"no attempts yet", Backoff{}, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.b.Carried(tt.attempts, tt.up); got != tt.want {
				t.Errorf("Carried(%d, %v) = %d; want %d", tt.attempts, tt.up, got, tt.want)
			}
		})
	}
}
