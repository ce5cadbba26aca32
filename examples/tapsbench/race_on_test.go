//go:build race

package main

// raceDetector reports a -race build.
const raceDetector = true
