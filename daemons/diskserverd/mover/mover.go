// Package mover is the data side of a disk server: an HTTP handler that receives uploads
// (PUT) into and serves downloads (GET) from the server's file systems, authorised by the
// one-time token a transfer job published, and reports each transfer's end to the
// database (transfer_put_ended, transfer_get_ended, transfer_fail).
//
// Wire contract, beside daemons/rhd/api:
//
//	PUT /v1/transfers/{subrequest id}
//	    Authorization: Bearer <token>      (401 without it, 403 when it does not check)
//	    Content-Length: <bytes>            (or Transfer-Encoding: chunked)
//	    X-Pollux-Size: <bytes>             (optional, chunked only: the length declared)
//	    X-Pollux-Adler32: <8 hex digits>   (optional, as a header or, chunked, as a
//	                                        trailer: the upload is refused when it differs;
//	                                        without it an auto_close upload is not closed)
//	    → 201 {"size_bytes":N,"checksum_adler32":"0123abcd"}
//	GET /v1/transfers/{subrequest id}
//	    Authorization: Bearer <token>
//	    → 200, Content-Length: <bytes>, X-Pollux-Adler32: <the catalogue's adler32>
//
// Streaming uploads are accepted, as xrootd and dCache accept them: a client that produces
// its data as it goes (a pipe, a compressor) need not know its size first. Such an upload
// gets no space reserved up front (a full file system fails it when the disk fills), its
// service class's size limit is applied as it arrives, and its end is the final chunk, so a
// client that goes away mid-way is still seen as truncated. With a Content-Length the
// space is reserved first and a truncated upload is the bytes missing. A streamed upload
// that declares its length (X-Pollux-Size: the Pollux client streams every file of 4 MiB
// or more, so that it hashes as it sends) has it checked against the limit and reserved
// first, and fails if the stream turns out longer or shorter.
//
// A caller without the transfer's token is refused and changes nothing. A caller with it
// has made the transfer's one call: if that call is refused (wrong method for the
// transfer, a malformed checksum, too large), the transfer fails at once with the reason,
// recorded before the answer goes out; no transfer is left READY, waiting for a client
// that came and was turned away, until its open timeout.
//
// A download's size and checksum are the catalogue's (transfer_claim returns them), so
// both go in the header, and the body is sent with sendfile. The mover verifies the copy
// while it sends it (send): the size before the first byte, the adler32 segment by
// segment, a few segments ahead of the socket, and the last segment goes out only once the
// whole sum matched. A copy that does not match is reported corrupt (transfer_get_corrupt:
// marked, never read again, kept from the garbage collector, journaled for the operator);
// its client gets a 503 with the reason when nothing was sent yet (any copy of one segment
// or less), otherwise the connection is cut, and it sees fewer bytes than the
// Content-Length. A client checks what it received against the header all the same: the
// check covers the network and its own disk too.
//
// Every failure answers with an api.ErrorBody naming the kind, the SQLSTATE and what was
// wrong.
package mover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/logging"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/pump"
	"github.com/pollux-storage/pollux/model"
)

// PathTransfers prefixes a transfer's endpoint; the subrequest id follows.
const PathTransfers = "/v1/transfers/"

// PathWake takes a POST from a daemon that placed a transfer on this disk server: a hint
// to claim now rather than at the next poll. It carries nothing and needs no credentials:
// the database is the truth, so the worst a stray call does is one early claim.
const PathWake = "/v1/wake"

// recordTimeout bounds reporting a transfer's end; it exceeds framework/pg's retry budget
// so that a database failover is ridden out.
const recordTimeout = 2 * time.Minute

// TransferURL is the endpoint of subrequest id's transfer on a mover at base.
func TransferURL(base string, id int64) string {
	return strings.TrimRight(base, "/") + PathTransfers + strconv.FormatInt(id, 10)
}

// Config is what a Handler needs.
type Config struct {
	DB        *pg.DB
	Transfers *Transfers
	// DiskServerID is this disk server's id in the catalogue (it may change when the
	// server registers anew): with a mount point and a path, it names a copy.
	DiskServerID func() int64
	// MountPoints are the server's data directories (absolute, clean): the only places the
	// mover reads or writes, whatever the database says.
	MountPoints []string
	Log         *zap.Logger
	// Wake is called for each wake-up hint (PathWake); nil ignores them.
	Wake func()
	// Metrics counts the transfers; nil counts nothing.
	Metrics *Metrics
}

// Handler serves the transfer endpoints.
type Handler struct {
	cfg    Config
	mounts map[string]bool
	bufs   *pump.Blocks
}

// NewHandler returns the mover's handler.
func NewHandler(cfg Config) *Handler {
	h := &Handler{cfg: cfg, mounts: map[string]bool{}, bufs: pump.NewBlocks()}
	for _, m := range cfg.MountPoints {
		h.mounts[filepath.Clean(m)] = true
	}
	if h.cfg.Log == nil {
		h.cfg.Log = zap.NewNop()
	}
	return h
}

// transfer is one client's call, from the token check to the reply.
type transfer struct {
	h     *Handler
	id    int64
	t     *Transfer
	row   model.TransferClaimRow
	ctx   context.Context
	log   *zap.Logger
	begin time.Time
	// unblockRead makes a read of the request's body in progress return.
	unblockRead func()
	// outcome is what the metrics count the call as, once something decided it ("" until
	// then: the call's error decides, see outcomeOf); bytes is what it moved.
	outcome string
	bytes   int64
}

// ServeHTTP checks the caller's token, spends it, then moves the data or refuses the call.
// A caller without the transfer's token is refused and changes nothing: it may be anyone,
// and must not be able to end another client's transfer. A caller with the token is the
// transfer's client and this is its one call: whatever is wrong with it (method, headers,
// size), the transfer is failed with the reason before the answer goes out, so that no
// transfer waits READY for a client that was already turned away.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == PathWake {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			replyError(w, http.StatusMethodNotAllowed, model.SQLStateInvalidArgument, "method "+r.Method+" not allowed: POST a wake-up hint")
			return
		}
		if h.cfg.Wake != nil {
			h.cfg.Wake()
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, PathTransfers)
	id, err := strconv.ParseInt(rest, 10, 64)
	if !ok || err != nil || id <= 0 {
		replyError(w, http.StatusNotFound, model.SQLStateNotFound,
			fmt.Sprintf("no such endpoint %s: the mover serves PUT and GET %s{subrequest id}", r.URL.Path, PathTransfers))
		return
	}
	log := h.cfg.Log.With(zap.Int64("subrequest", id), zap.String("method", r.Method), zap.String("client", r.RemoteAddr))
	auth := r.Header.Get("Authorization")
	token, isBearer := strings.CutPrefix(auth, "Bearer ")
	if auth == "" || !isBearer || strings.TrimSpace(token) == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pollux mover"`)
		replyError(w, http.StatusUnauthorized, model.SQLStatePermissionDenied,
			"missing credentials: send the transfer's one-time token as \"Authorization: Bearer <token>\"")
		return
	}
	token = strings.TrimSpace(token)
	x := &transfer{h: h, id: id, log: log, begin: time.Now()}

	// Only a transfer a job of this process watches is served: the job bounds it in time
	// and, when the client is late or the server stops, turns clients away.
	if x.t = h.cfg.Transfers.get(id); x.t == nil {
		replyError(w, http.StatusForbidden, model.SQLStatePermissionDenied,
			fmt.Sprintf("no transfer of subrequest %d is waiting on this disk server: its token was used, or the transfer is over", id))
		return
	}
	if loc := x.t.describe(); loc.Path != "" {
		x.log = x.log.With(zap.String(logging.KeyRequestID, loc.RequestID), zap.String("path", loc.Path))
	}
	row, err := x.t.open(token)
	if err != nil {
		x.log.Info("transfer token refused", zap.String("reason", err.Error()))
		replyError(w, http.StatusForbidden, model.SQLStatePermissionDenied, err.Error())
		return
	}
	x.row = row
	direction := DirectionDownload
	if string(x.row.Type) == http.MethodPut {
		direction = DirectionUpload
	}

	// From here the token is spent: the transfer ends recorded, one way or another.
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	x.ctx = ctx
	rc := http.NewResponseController(w)
	var mu sync.Mutex
	handlerDone := false
	// expire unblocks a read from or write to the client at once; a response controller
	// must not be used once the handler returned.
	expire := func(read, write bool) {
		mu.Lock()
		defer mu.Unlock()
		if !handlerDone {
			if read {
				_ = rc.SetReadDeadline(time.Now())
			}
			if write {
				_ = rc.SetWriteDeadline(time.Now())
			}
		}
	}
	defer func() {
		mu.Lock()
		handlerDone = true
		mu.Unlock()
	}()
	abort := func(cause error) {
		cancel(cause)
		expire(true, true)
	}
	x.unblockRead = func() { expire(true, false) }
	var outcome error
	defer func() { x.t.end(outcome) }()
	// Counted also when a download is cut off by a panic (http.ErrAbortHandler): the
	// outcome was set on the way.
	defer func() {
		o := x.outcome
		if o == "" {
			o = outcomeOf(outcome)
		}
		h.cfg.Metrics.observe(direction, o, x.bytes, time.Since(x.begin))
	}()
	if cause := x.t.start(abort); cause != nil {
		abort(cause)
	}

	switch typ := string(x.row.Type); {
	case r.Method != http.MethodPut && r.Method != http.MethodGet:
		w.Header().Set("Allow", typ)
		outcome = x.fail(w, http.StatusMethodNotAllowed, model.SQLStateInvalidArgument,
			fmt.Sprintf("method %s not allowed: subrequest %d is a %s transfer (PUT uploads, GET downloads)", r.Method, id, typ))
	case typ != r.Method:
		w.Header().Set("Allow", typ)
		outcome = x.fail(w, http.StatusMethodNotAllowed, model.SQLStateInvalidArgument,
			fmt.Sprintf("subrequest %d is a %s transfer: use %s, not %s", id, typ, typ, r.Method))
	case x.row.DiskPath == "":
		outcome = x.fail(w, http.StatusInternalServerError, model.SQLStateTransferFailed,
			fmt.Sprintf("subrequest %d has no disk copy to transfer", id))
	case r.Method == http.MethodPut:
		outcome = x.put(w, r)
	default:
		outcome = x.get(w)
	}
}

// location is where the copy lives, checked to be inside one of the server's data
// directories whatever the database says.
func (x *transfer) location() (string, error) {
	mount := filepath.Clean(x.row.MountPoint)
	if !x.h.mounts[mount] {
		return "", fmt.Errorf("file system %s is not a data directory of this disk server", x.row.MountPoint)
	}
	rel := filepath.FromSlash(x.row.DiskPath)
	if !filepath.IsLocal(rel) {
		return "", fmt.Errorf("disk path %q is not inside its file system", x.row.DiskPath)
	}
	return filepath.Join(mount, rel), nil
}

// abortedBy is why the job stopped the transfer, or nil (a client that went away cancels
// the request's context too, but that is not an abort).
func (x *transfer) abortedBy() error {
	cause := context.Cause(x.ctx)
	if cause == nil || errors.Is(cause, context.Canceled) {
		return nil
	}
	return cause
}

// aborted says whether the job stopped the transfer and, if so, records its reason unless
// the server is shutting down (the transfer is then taken back, not failed); outcome is
// what the job is told.
func (x *transfer) aborted(w http.ResponseWriter) (aborted bool, outcome error) {
	cause := x.abortedBy()
	switch {
	case cause == nil:
		return false, nil
	case errors.Is(cause, ErrShutdown):
		x.log.Warn("transfer aborted", zap.Error(cause))
		return true, cause
	}
	return true, x.fail(w, http.StatusServiceUnavailable, model.SQLStateTransferFailed, cause.Error())
}

// fail records the transfer's failure and answers the client with it (w nil: the
// response has begun, nothing more can be said). It returns nil once the failure is
// recorded.
func (x *transfer) fail(w http.ResponseWriter, status int, code, message string) error {
	if x.outcome == "" {
		x.outcome = OutcomeFailed
	}
	x.log.Warn("transfer failed", zap.String("code", code), zap.String("reason", message),
		zap.Duration("after", time.Since(x.begin)))
	err := x.record("fail transfer", func(ctx context.Context, q pg.Querier) error {
		return model.TransferFail(ctx, q, x.id, x.t.Token(), code, message)
	})
	if err != nil {
		x.log.Error("recording the transfer failure", zap.Error(err))
	}
	if w != nil {
		replyError(w, status, code, message)
	}
	return err
}

// record reports to the database even when the client has gone (its request's context
// is then cancelled). Every report is idempotent (schema/logic/transfer.sql): one whose
// commit's reply was lost is made again and finds itself recorded, so a lost reply never
// turns a recorded end into a refusal.
func (x *transfer) record(name string, fn func(ctx context.Context, q pg.Querier) error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(x.ctx), recordTimeout)
	defer cancel()
	return x.h.cfg.DB.DoIdempotent(ctx, name, func(q pg.Querier) error { return fn(ctx, q) })
}

// discardRefused handles the bytes of a write whose end was refused (removed or taken back
// while it was written, or failed meanwhile). Bytes are unlinked only when the catalogue
// says that no copy lives at their place, so that nobody else ever will: a copy it still
// has is wanted (STAGED, STAGEOUT) or its garbage collector's to delete (INVALID), and
// when the catalogue cannot be asked the bytes stay (a stray file costs space; an unlink
// of the catalogue's content loses the file).
func (x *transfer) discardRefused(final string) {
	if x.h.cfg.DiskServerID == nil {
		x.log.Error("refused upload kept: the mover does not know its disk server's id", zap.String("file", final))
		return
	}
	var discardable bool
	err := x.record("ask about a refused copy", func(ctx context.Context, q pg.Querier) (err error) {
		discardable, err = model.DiskCopyDiscardable(ctx, q, x.h.cfg.DiskServerID(), x.row.MountPoint, x.row.DiskPath)
		return err
	})
	switch {
	case err != nil:
		x.log.Error("refused upload kept: the catalogue could not say whether its copy is dead", zap.String("file", final), zap.Error(err))
	case !discardable:
		x.log.Info("refused upload left to the catalogue: its copy is still recorded", zap.String("file", final))
	default:
		if err := os.Remove(final); err != nil && !errors.Is(err, os.ErrNotExist) {
			x.log.Error("refused upload not removed", zap.String("file", final), zap.Error(err))
		}
	}
}

// The modes of what a mover writes: copies 0600, directories 0700 (see put).
const (
	fileMode os.FileMode = 0o600
	dirMode  os.FileMode = 0o700
)

// put receives an upload into <disk path>.part, checks it, makes it durable, renames it
// into place and records it. An upload without a Content-Length (chunked: the client
// streams what it produces) is taken as well; its end is the final chunk, and its checksum
// may follow the data as a trailer.
func (x *transfer) put(w http.ResponseWriter, r *http.Request) error {
	size := r.ContentLength // -1: chunked, the size is known at the end
	var wantSum string
	if v := r.Header.Get(api.HeaderAdler32); v != "" {
		var err error
		if wantSum, err = parseAdler32(v); err != nil {
			return x.fail(w, http.StatusBadRequest, model.SQLStateInvalidArgument, err.Error())
		}
	}
	// A chunked upload may declare its length (api.HeaderSize): checked against the limit
	// and reserved before the first byte, and required of the stream at its end.
	declared := size
	if v := r.Header.Get(api.HeaderSize); v != "" && size < 0 {
		d, err := strconv.ParseInt(v, 10, 64)
		if err != nil || d < 0 {
			return x.fail(w, http.StatusBadRequest, model.SQLStateInvalidArgument,
				fmt.Sprintf("%s %q is not a length in bytes", api.HeaderSize, v))
		}
		declared = d
	}
	limit := x.row.MaxSizeBytes
	if limit > 0 && declared > limit {
		return x.fail(w, http.StatusRequestEntityTooLarge, model.SQLStateBadData,
			fmt.Sprintf("the upload of %d bytes is larger than its service class allows (%d bytes)", declared, limit))
	}
	var in io.Reader = r.Body
	if limit > 0 && size < 0 {
		// The size is learnt only by reading: stop at the first byte over the limit.
		in = http.MaxBytesReader(w, r.Body, limit)
	}
	// Counted for the job's minimum-rate check (daemons/diskserverd/diskserver/transfer.go).
	body := counting{r: in, moved: &x.t.moved}
	final, err := x.location()
	if err != nil {
		return x.fail(w, http.StatusServiceUnavailable, model.SQLStateTransferFailed, err.Error())
	}
	dir := filepath.Dir(final)
	part := final + ".part"
	// Only the disk server's own account reads its data: users reach their bytes through a
	// mover and its one-time token, never through the file system, so nobody else on the
	// host needs to read a copy or list a directory of them.
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return x.fail(w, http.StatusServiceUnavailable, model.SQLStateTransferFailed, fmt.Sprintf("creating %s: %v", dir, err))
	}
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fileMode)
	if err != nil {
		return x.fail(w, http.StatusServiceUnavailable, model.SQLStateTransferFailed, fmt.Sprintf("creating %s: %v", part, err))
	}
	// A partial file left by a crash keeps the mode it was created with: set it.
	if err := f.Chmod(fileMode); err != nil {
		_ = f.Close()
		return x.fail(w, http.StatusServiceUnavailable, model.SQLStateTransferFailed, fmt.Sprintf("restricting %s: %v", part, err))
	}
	open := true
	// The partial file is no copy of the catalogue's (the bytes take the copy's name only
	// at the rename, once they checked out), so it may go whatever the catalogue says.
	discard := func() {
		if open {
			_ = f.Close()
			_ = os.Remove(part)
			open = false
		}
	}
	defer discard()
	// failed discards the partial file before the failure is recorded, so that nothing
	// of a failed upload is left once its client learns of the failure.
	failed := func(status int, code, message string) error {
		discard()
		return x.fail(w, status, code, message)
	}
	if err := reserve(f, declared); err != nil {
		return failed(http.StatusInsufficientStorage, model.SQLStateTransferFailed,
			fmt.Sprintf("no room for %d bytes on %s: %v", declared, x.row.MountPoint, err))
	}

	// The writeback of each stretch starts as it is written, so that the fsync below
	// waits for the last stretch only.
	n, sum, readErr, writeErr := pump.Copy(pump.NewWriteback(f), body, size, x.h.bufs, x.unblockRead)
	x.bytes = n
	x.t.received.Store(true)
	if x.abortedBy() != nil {
		discard()
		_, outcome := x.aborted(w)
		return outcome
	}
	var tooLarge *http.MaxBytesError
	switch {
	case writeErr != nil:
		return failed(http.StatusServiceUnavailable, model.SQLStateTransferFailed, fmt.Sprintf("writing %s: %v", part, writeErr))
	case errors.As(readErr, &tooLarge):
		return failed(http.StatusRequestEntityTooLarge, model.SQLStateBadData,
			fmt.Sprintf("the upload is larger than its service class allows (%d bytes)", limit))
	case size >= 0 && n < size:
		// The client sent less than it declared and closed, or went away mid-way.
		x.log.Info("upload truncated", zap.Int64("bytes", n), zap.Int64("declared", size), zap.NamedError("read_error", readErr))
		return failed(http.StatusBadRequest, model.SQLStateBadData, fmt.Sprintf("upload truncated: got %d of %d bytes", n, size))
	case readErr != nil:
		// A chunked upload that ended without its final chunk.
		x.log.Info("upload truncated", zap.Int64("bytes", n), zap.NamedError("read_error", readErr))
		return failed(http.StatusBadRequest, model.SQLStateBadData, fmt.Sprintf("upload truncated: it broke off after %d bytes (%v)", n, readErr))
	case declared >= 0 && n != declared:
		// A chunked upload that ended cleanly, at another length than it declared.
		x.log.Info("upload of another length than declared", zap.Int64("bytes", n), zap.Int64("declared", declared))
		return failed(http.StatusBadRequest, model.SQLStateBadData,
			fmt.Sprintf("the upload sent %d bytes but declared %d (%s): the file changed while it was sent", n, declared, api.HeaderSize))
	}
	if v := r.Trailer.Get(api.HeaderAdler32); v != "" {
		// Read only now: a trailer arrives after the data.
		trailerSum, err := parseAdler32(v)
		switch {
		case err != nil:
			return failed(http.StatusBadRequest, model.SQLStateInvalidArgument, "trailer "+err.Error())
		case wantSum != "" && trailerSum != wantSum:
			x.h.cfg.Metrics.checksumFailed(DirectionUpload)
			return failed(http.StatusBadRequest, model.SQLStateBadData,
				fmt.Sprintf("checksum mismatch: the client's header says %s and its trailer %s", wantSum, trailerSum))
		}
		wantSum = trailerSum
	}
	if wantSum != "" && wantSum != sum {
		x.h.cfg.Metrics.checksumFailed(DirectionUpload)
		return failed(http.StatusBadRequest, model.SQLStateBadData,
			fmt.Sprintf("checksum mismatch: client says %s, received data has %s", wantSum, sum))
	}
	// The client's sum, checked equal to the bytes', goes to the catalogue: an upload that
	// came with none is not closed on its own (transfer_put_ended decides).
	var clientSum *string
	if wantSum != "" {
		clientSum = &wantSum
	}
	if err := f.Sync(); err != nil {
		return failed(http.StatusServiceUnavailable, model.SQLStateTransferFailed, fmt.Sprintf("flushing %s: %v", part, err))
	}
	open = false
	if err := f.Close(); err != nil {
		_ = os.Remove(part)
		return x.fail(w, http.StatusServiceUnavailable, model.SQLStateTransferFailed, fmt.Sprintf("closing %s: %v", part, err))
	}
	if err := os.Rename(part, final); err != nil {
		_ = os.Remove(part)
		return x.fail(w, http.StatusServiceUnavailable, model.SQLStateTransferFailed, fmt.Sprintf("renaming %s: %v", part, err))
	}
	// The rename is durable only once the directory is. The file now has the copy's
	// name: the failure makes the copy INVALID, and its garbage collector unlinks it.
	if err := syncDir(dir); err != nil {
		return x.fail(w, http.StatusServiceUnavailable, model.SQLStateTransferFailed, fmt.Sprintf("flushing %s: %v", dir, err))
	}

	err = x.record("end upload", func(ctx context.Context, q pg.Querier) error {
		return model.TransferPutEnded(ctx, q, x.id, x.t.Token(), n, sum, clientSum)
	})
	switch code := pg.SQLState(err); code {
	case model.SQLStateQuotaExceeded:
		// The owner's quota has no room for these bytes (known only now): the write
		// fails with that reason and gives its copy up, which its garbage collector
		// unlinks; the client is told which quota and by how much.
		return x.fail(w, model.ErrorKindQuota.HTTPStatus(), code, pg.ServerMessage(err))
	case model.SQLStateConflict, model.SQLStateUnavailable:
		// Removed while being written (conflict: the user's doing), or given up by the
		// service (unavailable: run it again): the catalogue wants none of it.
		x.log.Warn("upload refused", zap.String("reason", pg.ServerMessage(err)))
		x.outcome = OutcomeRefused
		x.discardRefused(final)
		status := http.StatusConflict
		if code == model.SQLStateUnavailable {
			status = http.StatusServiceUnavailable
		}
		replyError(w, status, code, pg.ServerMessage(err))
		return nil
	}
	if err != nil {
		// The file stays: the end may have committed (its outcome is unknown when the
		// database stayed out of reach). If it did not, the watcher fails the transfer, the
		// copy becomes INVALID and its garbage collector unlinks it.
		x.log.Error("recording the upload", zap.Error(err))
		replyError(w, http.StatusServiceUnavailable, model.SQLStateUnavailable, fmt.Sprintf("recording the upload: %v", err))
		return err
	}
	elapsed := time.Since(x.begin)
	x.log.Info("upload ended", zap.Int64("bytes", n), zap.String("adler32", sum), zap.Duration("took", elapsed),
		zap.Float64("mib_per_s", mibPerSecond(n, elapsed)))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(api.UploadResponse{SizeBytes: n, ChecksumAdler32: sum})
	return nil
}

// get sends a copy to the client with the catalogue's size and adler32 in its header,
// checking the copy against both on the way; a copy that is not what the catalogue says is
// reported corrupt (transfer_get_corrupt) and never reaches the client whole.
func (x *transfer) get(w http.ResponseWriter) error {
	path, err := x.location()
	if err != nil {
		return x.fail(w, http.StatusServiceUnavailable, model.SQLStateTransferFailed, err.Error())
	}
	if x.row.ChecksumAdler32 == nil {
		return x.fail(w, http.StatusServiceUnavailable, model.SQLStateTransferFailed,
			fmt.Sprintf("the catalogue has no adler32 for the copy %s, so it cannot be read verified", path))
	}
	want := strings.ToLower(*x.row.ChecksumAdler32)
	f, err := os.Open(path)
	if err != nil {
		return x.fail(w, http.StatusServiceUnavailable, model.SQLStateTransferFailed, fmt.Sprintf("opening the copy: %v", err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return x.fail(w, http.StatusServiceUnavailable, model.SQLStateTransferFailed, fmt.Sprintf("opening the copy: %v", err))
	}
	size := st.Size()
	if x.row.SizeBytes != nil && *x.row.SizeBytes != size {
		return x.corrupt(w, path, size, nil)
	}
	started := false
	start := func() {
		hdr := w.Header()
		hdr.Set("Content-Type", "application/octet-stream")
		hdr.Set("Content-Length", strconv.FormatInt(size, 10))
		hdr.Set(api.HeaderAdler32, want)
		w.WriteHeader(http.StatusOK)
		// Out now, so that the body goes straight to sendfile rather than its first
		// bytes through the response's buffer.
		_ = http.NewResponseController(w).Flush()
		started = true
	}
	// Once the response has begun, only cutting the connection tells the client that the
	// download failed: it then sees fewer bytes than the Content-Length.
	replyTo := func() http.ResponseWriter {
		if started {
			return nil
		}
		return w
	}
	cut := func(outcome error) error {
		if started {
			x.t.end(outcome) // before the panic unwinds past the deferred end
			panic(http.ErrAbortHandler)
		}
		return outcome
	}

	var window time.Duration
	if x.row.MinBytesPerSecond > 0 {
		window = time.Duration(x.row.MinRateSeconds) * time.Second
	}
	n, sum, readErr, writeErr := x.h.send(w, f, size, want, start, &x.t.moved, window)
	x.t.received.Store(true) // sent: what follows is no slow client's doing
	x.bytes = n
	if aborted, outcome := x.aborted(replyTo()); aborted {
		return cut(outcome)
	}
	switch {
	case readErr != nil:
		return cut(x.fail(replyTo(), http.StatusServiceUnavailable, model.SQLStateTransferFailed,
			fmt.Sprintf("reading %s after %d of %d bytes: %v", path, n, size, readErr)))
	case sum != "" && sum != want:
		return cut(x.corrupt(replyTo(), path, size, &sum))
	case writeErr != nil || n < size:
		return cut(x.fail(nil, 0, model.SQLStateTransferFailed, fmt.Sprintf("the client disconnected after %d of %d bytes", n, size)))
	}
	err = x.record("end download", func(ctx context.Context, q pg.Querier) error {
		return model.TransferGetEnded(ctx, q, x.id, x.t.Token(), n)
	})
	switch {
	case pg.SQLState(err) == model.SQLStateConflict:
		x.log.Warn("download ended after its transfer was over", zap.String("reason", pg.ServerMessage(err)))
		x.outcome = OutcomeRefused
		return nil
	case err != nil:
		x.log.Error("recording the download", zap.Error(err))
		return err
	}
	elapsed := time.Since(x.begin)
	x.log.Info("download ended", zap.Int64("bytes", n), zap.String("adler32", sum), zap.Duration("took", elapsed),
		zap.Float64("mib_per_s", mibPerSecond(n, elapsed)))
	return nil
}

// corrupt records that the copy at path is not what the catalogue says: it has size bytes
// and, when it was read to its end, the adler32 sum. The copy is marked so that no read
// chooses it again and the garbage collector keeps it for the operator; the read fails with
// a reason naming the copy and both checksums, which the client gets when w is not nil.
// It returns nil once that is recorded.
func (x *transfer) corrupt(w http.ResponseWriter, path string, size int64, sum *string) error {
	x.outcome = OutcomeCorrupt
	x.h.cfg.Metrics.checksumFailed(DirectionDownload)
	var message string
	err := x.record("copy corrupt", func(ctx context.Context, q pg.Querier) error {
		var err error
		message, err = model.TransferGetCorrupt(ctx, q, x.id, x.t.Token(), size, sum)
		return err
	})
	if err != nil {
		message = fmt.Sprintf("the copy %s is corrupt: %d bytes on disk", path, size)
		if sum != nil {
			message += " with adler32 " + *sum
		}
		x.log.Error("recording a corrupt copy", zap.String("found", message), zap.Error(err))
	} else {
		x.log.Error("copy corrupt", zap.String("reason", message), zap.String("disk_copy", path))
	}
	if w != nil {
		replyError(w, http.StatusServiceUnavailable, model.SQLStateTransferFailed, message)
	}
	return err
}

// reserve allocates size bytes for f up front, so that a full file system refuses the
// upload at its start rather than near its end. File systems without fallocate are let be.
func reserve(f *os.File, size int64) error {
	if size <= 0 { // nothing to reserve, or a chunked upload of unknown size
		return nil
	}
	const keepSize = 0x01 // FALLOC_FL_KEEP_SIZE: reserve blocks, leave the length alone
	err := syscall.Fallocate(int(f.Fd()), keepSize, 0, size)
	if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS) {
		return nil
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// parseAdler32 accepts eight hex digits in either case and returns them in lower case.
func parseAdler32(v string) (string, error) {
	v = strings.TrimSpace(v)
	if len(v) != 8 {
		return "", fmt.Errorf("%s %q is not eight hex digits", api.HeaderAdler32, v)
	}
	if _, err := strconv.ParseUint(v, 16, 32); err != nil {
		return "", fmt.Errorf("%s %q is not eight hex digits", api.HeaderAdler32, v)
	}
	return strings.ToLower(v), nil
}

func mibPerSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / (1 << 20) / d.Seconds()
}

// replyError answers with an api.ErrorBody; the kind follows from the SQLSTATE.
func replyError(w http.ResponseWriter, status int, code, message string) {
	kind, ok := model.KindOfSQLState(code)
	if !ok {
		kind = model.ErrorKindInternal
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: api.Error{Kind: string(kind), Code: code, Message: message}})
}
