package actors

import (
	"sync"
	"testing"
)

// TestIOCountWait: Wait returns at once on zero, and otherwise only once
// every Add has been matched by a Done (no lost wake-up).
func TestIOCountWait(t *testing.T) {
	var c ioCount
	c.Wait() // zero: returns at once
	for round := 0; round < 200; round++ {
		const n = 8
		var started sync.WaitGroup
		release := make(chan struct{})
		var done [n]bool
		started.Add(n)
		for i := 0; i < n; i++ {
			c.Add(1)
			go func() {
				started.Done()
				<-release
				done[i] = true
				c.Done()
			}()
		}
		started.Wait()
		waited := make(chan struct{})
		go func() { c.Wait(); close(waited) }()
		close(release)
		<-waited
		for i := range done {
			if !done[i] {
				t.Fatalf("round %d: Wait returned before goroutine %d was done", round, i)
			}
		}
	}
	c.Done() // below zero stays zero
	c.Wait()
	if c.n.Load() != 0 {
		t.Fatalf("count %d, want 0", c.n.Load())
	}
}
