// Package claim runs named pools of workers that take work from PostgreSQL.
//
// A worker's Step claims a batch (a SQL function using FOR UPDATE SKIP LOCKED), decides or
// does the work, and reports how many rows it took. The loop around it:
//
//	        ┌──────────────────────────── n ≥ batch: wake a peer, step again ─┐
//	        ▼                                                                  │
//	  ┌──▶ Step ──▶ n > 0 ─────────────────────────────────────────────────────┘
//	  │     │ n = 0 (queue empty as far as SKIP LOCKED can see)
//	  │     ▼
//	  │   idle ── NOTIFY on a pool channel (one idle worker wakes) ──┐
//	  │     │──── poll interval elapsed (safety net, jittered) ──────┤
//	  │     └──── Stop: stop claiming ──▶ exit                      │
//	  └──────────────────────────────────────────────────────────────┘
//	error: logged, counted, and the worker backs off (transient SQLSTATEs were already
//	retried inside the step's transaction by framework/pg)
//
// One NOTIFY wakes one worker; a worker that got a full batch wakes another, so a burst
// recruits the whole pool within a few steps while a trickle keeps one worker busy. There
// are no busy loops: an idle worker blocks in select until a wake-up, its poll timer or Stop.
//
// Stop stops claiming at once; a step in flight runs to completion unless the drain deadline
// passes, in which case its context is cancelled and its transaction rolls back, releasing
// the rows to whoever claims next.
package claim
