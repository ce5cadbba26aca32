//go:build !race

package taps

// raceDetector reports a -race build.
const raceDetector = false
