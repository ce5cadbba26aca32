//go:build !windows

package stacks

import "syscall"

// acceptRetryErrnos are the errors of an Accept that AcceptRetryable
// retries.
var acceptRetryErrnos = []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM}
