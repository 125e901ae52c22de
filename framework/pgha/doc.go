// Package pgha runs a highly available PostgreSQL on one machine under pg_auto_failover
// (Debian's postgresql-15-auto-failover, the pg_autoctl command): a monitor and two data
// nodes, a primary and a synchronous hot standby, each listening at its own loopback
// address, everything under one directory. It creates such a formation from scratch, waits
// until the standby is in sync (every acknowledged commit is on both nodes), says which node
// is primary and what the multi-host DSN is, kills a node whole as if its host died (its
// postgres and its pg_autoctl keeper, kill -9), waits for the monitor to promote the
// standby, brings the old node back as the new standby, and stops and removes everything.
//
// The decisions are pg_auto_failover's: this package only starts its processes, sets its
// failure-detection timing (Timing) and reads its monitor. A failover, as the monitor and
// the keepers report it (pgautofailover.current_state; Events gives the monitor's story):
//
//	node1 (primary)                      node2 (secondary, synchronous)
//	    │ kill -9: postgres and keeper        │
//	    ×                                     │
//	monitor: health checks fail and the keeper has not reported for UnhealthyTimeout
//	    primary ──► draining                  secondary ──► prepare_promotion
//	    draining ──► demote_timeout           prepare_promotion ──► stop_replication
//	                                            (promoted, still read-only: a live old
//	                                             primary could still be writing)
//	PrimaryDemoteTimeout later, the old primary presumed dead:
//	    demote_timeout ──► demoted            stop_replication ──► wait_primary
//	                                            (writable; synchronous replication is off
//	                                             until a standby is back)
//	StartNode(node1): the keeper rewinds its data directory to the new timeline
//	    demoted ──► catchingup ──► secondary  wait_primary ──► primary (synchronous again)
//
// Every member runs as the unprivileged `postgres` account when the caller is root
// (PostgreSQL and pg_autoctl refuse root), with its data, sockets and pg_autoctl's
// configuration and state (XDG directories) inside its own directory, so that removing the
// formation's directory removes everything. The members share one TCP port, each at its
// own address in 127.0.0.0/8 chosen at random when the formation is created; an address
// already taken shows as a bind failure, and creation starts over at another one.
package pgha
