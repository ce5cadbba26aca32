package stacks

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAcceptRetryable(t *testing.T) {
	accept := func(errno syscall.Errno) error {
		return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"EMFILE", accept(syscall.EMFILE), true},
		{"ENFILE", accept(syscall.ENFILE), true},
		{"ENOBUFS", accept(syscall.ENOBUFS), true},
		{"ENOMEM", accept(syscall.ENOMEM), true},
		{"wrapped again", fmt.Errorf("listener: %w", accept(syscall.EMFILE)), true},
		{"EINVAL", accept(syscall.EINVAL), false},
		{"closed", net.ErrClosed, false},
		{"other", errors.New("accept: something else"), false},
		{"nil", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, AcceptRetryable(tc.err))
		})
	}
}
