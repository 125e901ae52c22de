package pgha

import (
	"errors"
	"fmt"
	"time"
)

// Timing is how fast the formation notices a dead primary and how long it waits before the
// standby takes writes. The first six are the monitor's settings (pgautofailover.* in the
// monitor's postgresql.auto.conf), the last one each keeper's (timeout.* in its
// pg_autoctl.cfg); pg_auto_failover's documentation ("Configuring pg_auto_failover")
// describes them.
type Timing struct {
	// HealthCheckPeriod is how often the monitor connects to each node
	// (pgautofailover.health_check_period).
	HealthCheckPeriod time.Duration `json:"health_check_period"`
	// HealthCheckTimeout bounds one health check's connection attempt
	// (pgautofailover.health_check_timeout).
	HealthCheckTimeout time.Duration `json:"health_check_timeout"`
	// HealthCheckMaxRetries failed attempts in a row mark a node's health bad
	// (pgautofailover.health_check_max_retries).
	HealthCheckMaxRetries int `json:"health_check_max_retries"`
	// HealthCheckRetryDelay separates those attempts (pgautofailover.health_check_retry_delay).
	HealthCheckRetryDelay time.Duration `json:"health_check_retry_delay"`
	// UnhealthyTimeout: a node whose health is bad is failed only once its keeper has not
	// reported for this long (pgautofailover.node_considered_unhealthy_timeout).
	UnhealthyTimeout time.Duration `json:"unhealthy_timeout"`
	// PrimaryDemoteTimeout is how long the promoted standby stays read-only, giving an old
	// primary that may still be alive (cut off, not dead) the time to stop itself
	// (pgautofailover.primary_demote_timeout).
	PrimaryDemoteTimeout time.Duration `json:"primary_demote_timeout"`
	// StartupGracePeriod: for this long after the monitor starts it fails no node over,
	// until its health checks have seen every node (pgautofailover.startup_grace_period).
	StartupGracePeriod time.Duration `json:"startup_grace_period"`
	// NetworkPartitionTimeout: a primary's keeper that reaches neither the monitor nor a
	// standby for this long stops its postgres (timeout.network_partition_timeout, whole
	// seconds).
	NetworkPartitionTimeout time.Duration `json:"network_partition_timeout"`
}

// DefaultTiming is pg_auto_failover's own defaults: a dead primary is replaced after about
// 20 s (unhealthy timeout) + 30 s (demote timeout), close to a minute.
func DefaultTiming() Timing {
	return Timing{
		HealthCheckPeriod:       5 * time.Second,
		HealthCheckTimeout:      5 * time.Second,
		HealthCheckMaxRetries:   2,
		HealthCheckRetryDelay:   2 * time.Second,
		UnhealthyTimeout:        20 * time.Second,
		PrimaryDemoteTimeout:    30 * time.Second,
		StartupGracePeriod:      10 * time.Second,
		NetworkPartitionTimeout: 20 * time.Second,
	}
}

// FastTiming is what Pollux runs with: the standby takes writes about 6–7 s after the
// primary died (measured on loopback; docs/operations.md has the figures). The members are
// on one machine or one LAN, so a health check that needs more than a second has failed,
// and three seconds of a freshly started monitor see every node checked twice.
// A cut-off primary's keeper stops its postgres after 3 s, before the standby can take
// writes (at the earliest UnhealthyTimeout + PrimaryDemoteTimeout = 6 s), so there is
// never a second writable primary; with synchronous replication the cut-off primary could
// not have acknowledged a commit meanwhile anyway, for want of its standby.
func FastTiming() Timing {
	return Timing{
		HealthCheckPeriod:       time.Second,
		HealthCheckTimeout:      time.Second,
		HealthCheckMaxRetries:   1,
		HealthCheckRetryDelay:   500 * time.Millisecond,
		UnhealthyTimeout:        2 * time.Second,
		PrimaryDemoteTimeout:    4 * time.Second,
		StartupGracePeriod:      3 * time.Second,
		NetworkPartitionTimeout: 3 * time.Second,
	}
}

// Validate reports a setting that cannot work, or a combination that would let a cut-off
// primary and the promoted standby take writes at the same time.
func (t Timing) Validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"health check period", t.HealthCheckPeriod}, {"health check timeout", t.HealthCheckTimeout},
		{"health check retry delay", t.HealthCheckRetryDelay}, {"unhealthy timeout", t.UnhealthyTimeout},
		{"primary demote timeout", t.PrimaryDemoteTimeout}, {"startup grace period", t.StartupGracePeriod},
		{"network partition timeout", t.NetworkPartitionTimeout},
	} {
		if d.v < time.Millisecond {
			errs = append(errs, fmt.Errorf("%s is %s: it must be at least 1ms", d.name, d.v))
		}
	}
	if t.HealthCheckMaxRetries < 0 {
		errs = append(errs, fmt.Errorf("health check retries is %d: it cannot be negative", t.HealthCheckMaxRetries))
	}
	if t.NetworkPartitionTimeout%time.Second != 0 {
		errs = append(errs, fmt.Errorf("network partition timeout is %s: pg_autoctl takes whole seconds", t.NetworkPartitionTimeout))
	}
	if t.NetworkPartitionTimeout >= t.UnhealthyTimeout+t.PrimaryDemoteTimeout {
		errs = append(errs, fmt.Errorf("network partition timeout %s is not below unhealthy timeout %s + primary demote timeout %s: "+
			"a cut-off primary would still take writes when its standby is promoted", t.NetworkPartitionTimeout, t.UnhealthyTimeout, t.PrimaryDemoteTimeout))
	}
	return errors.Join(errs...)
}

// monitorSettings are the monitor's lines of postgresql.auto.conf.
func (t Timing) monitorSettings() []string {
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	return []string{
		fmt.Sprintf("pgautofailover.health_check_period = %d", ms(t.HealthCheckPeriod)),
		fmt.Sprintf("pgautofailover.health_check_timeout = %d", ms(t.HealthCheckTimeout)),
		fmt.Sprintf("pgautofailover.health_check_max_retries = %d", t.HealthCheckMaxRetries),
		fmt.Sprintf("pgautofailover.health_check_retry_delay = %d", ms(t.HealthCheckRetryDelay)),
		fmt.Sprintf("pgautofailover.node_considered_unhealthy_timeout = %d", ms(t.UnhealthyTimeout)),
		fmt.Sprintf("pgautofailover.primary_demote_timeout = %d", ms(t.PrimaryDemoteTimeout)),
		fmt.Sprintf("pgautofailover.startup_grace_period = %d", ms(t.StartupGracePeriod)),
	}
}
