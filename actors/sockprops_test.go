package actors

import (
	"context"
	"net/netip"
	"sync"
	"testing"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// pacingStack is a fakeStack whose transports implement stacks.Pacing and
// record every rate set.
type pacingStack struct {
	*fakeStack
	mu    sync.Mutex
	rates []uint64
}

type pacingTransport struct {
	*pipeTransport
	s *pacingStack
}

func (p *pacingTransport) PacingRate(bitsPerSec uint64) error {
	p.s.mu.Lock()
	p.s.rates = append(p.s.rates, bitsPerSec)
	p.s.mu.Unlock()
	return nil
}

func (s *pacingStack) Dial(ctx context.Context, remote netip.AddrPort, opts stacks.Options) (stacks.Transport, error) {
	t, err := s.fakeStack.Dial(ctx, remote, opts)
	if err != nil {
		return nil, err
	}
	return &pacingTransport{pipeTransport: t.(*pipeTransport), s: s}, nil
}

func (s *pacingStack) set() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.rates...)
}

// TestSockPropsKernelPacingOnlyWhenSet: a connection whose maxSendRate was
// never set makes no SO_MAX_PACING_RATE call; setting a rate sets it, and
// going back to Unlimited resets it.
func TestSockPropsKernelPacingOnlyWhenSet(t *testing.T) {
	sys := NewSystem(Config{})
	defer shutdown(t, sys)
	ps := &pacingStack{fakeStack: newFakeStack(map[netip.AddrPort]outcome{addrB: {kind: "ok"}})}
	cfg := &messages.ConnectionConfig{Remotes: endpoints(addrB), Stacks: []stacks.Stack{ps}}
	ctx := context.Background()
	link := NewLink(sys.NewID(), 0, 0, true)
	res, err := Ask(ctx, sys, sys.Root, &InitiateConnection{Config: cfg, Link: link})
	require.NoError(t, err)
	conn := res.(*ConnectionStarted).Conn
	<-link.Ready()
	require.NoError(t, link.EstablishmentErr())
	require.Empty(t, ps.set(), "an unlimited rate that was never set needs no system call")

	set := func(v *messages.PropertyValue) {
		t.Helper()
		_, err := Ask(ctx, sys, conn, &messages.SetConnectionProperty{Name: "maxSendRate", Value: v})
		require.NoError(t, err)
	}
	set(&messages.PropertyValue{Kind: &messages.PropertyValue_IntValue{IntValue: 8_000_000}})
	require.Equal(t, []uint64{8_000_000}, ps.set())
	set(&messages.PropertyValue{Kind: &messages.PropertyValue_Special{Special: messages.Special_SPECIAL_UNLIMITED}})
	require.Equal(t, []uint64{8_000_000, 0}, ps.set())
	set(&messages.PropertyValue{Kind: &messages.PropertyValue_Special{Special: messages.Special_SPECIAL_UNLIMITED}})
	require.Equal(t, []uint64{8_000_000, 0}, ps.set(), "unlimited again: nothing to reset")

	_, err = Ask(ctx, sys, conn, &messages.AbortConnection{})
	require.NoError(t, err)
	<-link.Done()
}
