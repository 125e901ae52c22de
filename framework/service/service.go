// Package service states the contract every long-running piece of a daemon keeps (claim
// pools, the River client, the request handler's HTTP server), so the daemon framework can
// start them in order and drain them in reverse.
package service

import "context"

// Service is started once and stopped once.
type Service interface {
	// Name identifies the service in logs.
	Name() string
	// Start begins the service's work and returns once it runs. Cancelling ctx aborts
	// whatever the service is doing; a graceful end goes through Stop.
	Start(ctx context.Context) error
	// Stop stops taking new work and waits for work in flight until ctx ends; then it
	// aborts that work and returns ctx's error.
	Stop(ctx context.Context) error
}
