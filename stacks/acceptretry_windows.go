package stacks

import (
	"syscall"

	"golang.org/x/sys/windows"
)

// acceptRetryErrnos are the errors of an Accept that AcceptRetryable
// retries: Go's POSIX names, and what Winsock's accept returns for them.
var acceptRetryErrnos = []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
	windows.WSAEMFILE, windows.WSAENOBUFS}
