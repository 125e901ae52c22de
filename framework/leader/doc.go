// Package leader runs work that must happen in exactly one place at a time (sweeps, lease
// and timeout checks, taking work back from dead servers) on one instance of a daemon, with
// any number of backups standing by and fencing that makes a deposed leader harmless.
//
// Each singleton has a lease: a row in PostgreSQL with a holder, an expiry and an epoch. An
// Elector runs one election round every renew interval (Store.Acquire): the holder renews;
// a backup takes a lease that expired or was resigned; an instance configured as preferred
// takes it from one that is not (HTCondor's HAD_USE_PRIMARY). Every change of holder raises
// the epoch, and the epoch is the fencing token.
//
//	                round: lease live, held by another
//	             ┌───────────────┐
//	             ▼               │
//	start ──▶ BACKUP ────────────┘
//	             │  round: lease expired / resigned / we are preferred and it is not
//	             │  (epoch+1, journalled with the reason and the previous leader)
//	             ▼
//	          LEADER ◀──── round: renewed (same epoch; local deadline = send time + ttl)
//	             │
//	             ├── round: someone else holds it (preferred takeover) ─────▶ BACKUP
//	             ├── local deadline passed without a renewal (database
//	             │   unreachable, process paused) ──────────────────────────▶ BACKUP
//	             ├── a fenced write was refused (PX009) ───────────────────▶ BACKUP
//	             └── Stop (SIGTERM): resign at once (lease expires now) ──▶ stopped
//
// Fencing: Elector.Tx runs a singleton's step in a transaction whose first statement is
// Store.Fence(name, epoch). The fence refuses to go on unless the epoch is current and the
// lease live, and share-locks the lease row until the transaction ends, so a takeover waits
// for a write in flight rather than overlapping it; a leader that was paused past its lease
// and wakes up believing it still leads is refused by the database, whatever its own clock
// says. The fence also bounds how long its transaction may sit idle, so a leader stopped in
// the middle of one cannot hold the row. Local deadlines are only an optimisation: a
// leader stops trying once its deadline passes, but correctness rests on the fence.
//
// Failover time after a leader dies without resigning is at most ttl + renew interval
// (plus one statement), both set by flags (framework/daemon: --leader-lease-ttl,
// --leader-renew-interval); after a clean stop it is at most one renew interval.
package leader
