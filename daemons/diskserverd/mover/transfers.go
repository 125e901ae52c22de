package mover

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/model"
)

// Transfers are the transfers this process's jobs are running, keyed by subrequest id.
// A transfer job adds one before it publishes the endpoint (so a client that connects at
// once finds it) and removes it when it returns; the HTTP handlers find it to tell the job
// that the client came and when the transfer ended, and the job uses it to time the
// transfer out. The claimer published the transfer's one-time token (transfer_claim), so the
// mover checks it here, without a database round trip; a transfer missing from the table
// is not served, so that every transfer the mover runs is bounded by its job.
type Transfers struct {
	mu sync.Mutex
	m  map[int64]*Transfer
}

// NewTransfers returns an empty table.
func NewTransfers() *Transfers { return &Transfers{m: map[int64]*Transfer{}} }

// Add records a transfer the caller is about to start. It returns false when this process
// already runs a transfer of that subrequest (a duplicate job): the caller leaves it alone.
func (ts *Transfers) Add(id int64) (*Transfer, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if _, ok := ts.m[id]; ok {
		return nil, false
	}
	t := &Transfer{ID: id, started: make(chan struct{}), ended: make(chan struct{})}
	ts.m[id] = t
	return t, true
}

// Remove forgets t (and only t: a later transfer of the same subrequest stays).
func (ts *Transfers) Remove(t *Transfer) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.m[t.ID] == t {
		delete(ts.m, t.ID)
	}
}

// Len is the number of transfers in the table.
func (ts *Transfers) Len() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.m)
}

func (ts *Transfers) get(id int64) *Transfer {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.m[id]
}

// Transfer is one transfer as its job and its HTTP handler share it.
type Transfer struct {
	// ID is the subrequest's id.
	ID int64

	mu      sync.Mutex
	loc     model.TransferClaimRow
	token   string
	refused error       // set once the job gave up waiting: clients are turned away with it
	claimed bool        // a client presented the token: it cannot be used again
	abort   func(error) // stops the handler's I/O; set while it runs
	cause   error       // an abort that came before the handler could take it
	isEnded bool
	outcome error
	started chan struct{}
	ended   chan struct{}
	// moved counts the bytes an upload has received so far, for the job's minimum-rate
	// check (Moved).
	moved atomic.Int64
	// received is set once the upload's body has been read to its end (or failed): what
	// follows (checks, fsync, the report) moves no bytes and is no slow client's doing.
	received atomic.Bool
}

// Moved is how many bytes the transfer's upload has received so far, and whether it is
// still receiving. Downloads are not counted: their bytes go out a segment at a time by
// sendfile.
func (t *Transfer) Moved() (n int64, receiving bool) { return t.moved.Load(), !t.received.Load() }

// counting counts what is read through it into a transfer's moved bytes.
type counting struct {
	r     io.Reader
	moved *atomic.Int64
}

func (c counting) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.moved.Add(int64(n))
	return n, err
}

// Describe records what transfer_claim said, with the token it published. The claimer
// calls it before the claim commits, so no client can hold the token before the mover
// knows it.
func (t *Transfer) Describe(loc model.TransferClaimRow) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.loc, t.token = loc, loc.Token
}

// Token is the one-time token Describe recorded.
func (t *Transfer) Token() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.token
}

func (t *Transfer) describe() model.TransferClaimRow {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.loc
}

// Started is closed when a client presented the right token.
func (t *Transfer) Started() <-chan struct{} { return t.started }

// Ended is closed when the handler is done; Outcome then says whether it recorded the end.
func (t *Transfer) Ended() <-chan struct{} { return t.ended }

// Outcome is nil once the handler recorded the transfer's end in the database (success,
// failure, or the subrequest was already over), else why it could not.
func (t *Transfer) Outcome() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.outcome
}

// Expire turns clients away with reason from now on, unless one has presented the token;
// it reports whether it did. The job calls it when the client is late, and records the
// failure only when it returns true, so that a client connecting at that very moment is
// either served or refused, never both.
func (t *Transfer) Expire(reason error) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.claimed || t.isEnded {
		return false
	}
	t.refused = reason
	return true
}

// Abort stops the handler's I/O with cause (now, or as soon as it starts). The handler
// records cause as the failure unless it is ErrShutdown.
func (t *Transfer) Abort(cause error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.isEnded {
		return
	}
	if t.cause == nil {
		t.cause = cause
	}
	if t.abort != nil {
		t.abort(cause)
	}
	if t.refused == nil {
		t.refused = cause
	}
}

// open spends the one-time token for the client that presents it and says what to move,
// or says why the client is turned away.
func (t *Transfer) open(token string) (model.TransferClaimRow, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.refused != nil:
		return model.TransferClaimRow{}, fmt.Errorf("the transfer of subrequest %d is over: %w", t.ID, t.refused)
	case t.token == "":
		return model.TransferClaimRow{}, fmt.Errorf("the transfer token for subrequest %d does not check: it is wrong", t.ID)
	}
	keyHash := ""
	if t.loc.TransferKeyHash != nil {
		keyHash = *t.loc.TransferKeyHash
	}
	if err := api.CheckTransferCredential(token, t.token, keyHash); err != nil {
		return model.TransferClaimRow{}, fmt.Errorf("subrequest %d: %w", t.ID, err)
	}
	switch {
	case t.claimed:
		return model.TransferClaimRow{}, fmt.Errorf("the transfer token for subrequest %d was used already", t.ID)
	}
	t.claimed = true
	return t.loc, nil
}

// start follows an open that succeeded; abort stops the handler's I/O. It returns an
// abort that came first, which the handler must honour at once.
func (t *Transfer) start(abort func(error)) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.abort = abort
	close(t.started)
	return t.cause
}

// end says the handler is done; outcome is nil when it recorded the end. Only the first
// call counts.
func (t *Transfer) end(outcome error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.isEnded {
		return
	}
	t.isEnded, t.outcome, t.abort = true, outcome, nil
	close(t.ended)
}

// ErrShutdown aborts transfers when the disk server stops: the handler records nothing,
// as the transfer is taken back (retried) by the stopping server or its successor.
var ErrShutdown = errors.New("the disk server is shutting down")
