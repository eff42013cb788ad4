//go:build !onebackend

package main

// echo: OpenOrch's client has no echo endpoints.
func (run) echo() {}
