// Package api is the wire contract of rhd's HTTP/JSON API and of the movers' data
// endpoints, shared by the daemon and the client commands so that both sides compile
// against the same paths, headers and field names. It depends on nothing of Pollux's, so a
// client that imports it stays small and links no database driver (framework's
// TestDependencyRules keeps it so); the values of its statuses and error kinds are those
// of the generated, equally pgx-free package model/wire.
//
// Every call to rhd carries "Authorization: Bearer <token>". Every failure answers with
// an ErrorBody and the HTTP status of its kind (see wire.ErrorKind). Clients decode the
// answers strictly (unknown fields are errors): a field added on one side only is a
// version mismatch to report, not to ignore.
package api

import (
	"net/url"
	"time"
)

// Paths and parameters of rhd's API.
const (
	// PathRequests takes a POST of a SubmitRequest.
	PathRequests = "/v1/requests"
	// PathFiles answers GET ?path=/pollux/... with a File (stager_qry).
	PathFiles = "/v1/files"
	// PathQuotas answers GET with the caller's Quotas (stager_qry --quota).
	PathQuotas = "/v1/quotas"
	// ParamWait is the longest time (a Go duration such as "30s", or seconds) a GET of a
	// request waits for it to change, or a POST waits for the new request's first change;
	// rhd caps it at its --max-wait.
	ParamWait = "wait"
	// ParamSince is the UpdatedAt the client saw last (RFC 3339 with nanoseconds): the GET
	// waits only while the request has not changed since.
	ParamSince = "since"
	// ParamPath names the file of a GET of PathFiles.
	ParamPath = "path"
	// DefaultPort is where rhd listens unless told otherwise, and the port clients use for
	// a STAGE_HOST that names none (and no STAGE_PORT).
	DefaultPort = 9000
	// DefaultServiceClass is the service class of a request that names none.
	DefaultServiceClass = "default"
	// TimeFormat is how UpdatedAt and ParamSince are written.
	TimeFormat = time.RFC3339Nano
)

// HeaderAdler32 carries the adler32 of a file's bytes as eight lowercase hex digits, so
// the receiving side can verify what arrived. The client sends it with an upload (PUT to a
// mover) as a header or, when it streams the upload chunked, as an HTTP trailer; the mover
// sends the catalogue's with a download (GET from a mover) as a header, beside a
// Content-Length (daemons/diskserverd/mover has the whole wire contract).
const HeaderAdler32 = "X-Pollux-Adler32"

// HeaderSize carries the length in bytes of an upload the client streams chunked (its
// adler32 then follows the data as a trailer, computed as the bytes go): the mover checks
// it against its service class's limit and reserves the space before the first byte, and
// refuses an upload whose length turns out otherwise.
const HeaderSize = "X-Pollux-Size"

// HeaderTimeout is how long the client waits for an answer to this call beyond the
// long-poll wait it asks for (a Go duration such as "14s"). rhd bounds each piece of its
// database work by it (less a margin for the answer's travel), so that when its database
// is out of reach the client hears so (503) before it stops listening, rather than
// nothing; without it rhd gives its database up to 30 s.
const HeaderTimeout = "X-Pollux-Timeout"

// PathReady answers a load balancer's health check on the clients' port, without a token:
// 200 when the request handler is ready to serve (what its admin listener's /readyz says),
// 503 otherwise and from the first SIGTERM on.
const PathReady = "/readyz"

// RequestPath is the path of one request, for GET.
func RequestPath(id string) string { return PathRequests + "/" + url.PathEscape(id) }

// HistoryPath is the path of one request's story, for GET (stager_qry -r ID --history):
// answered with a History to the request's owner.
func HistoryPath(id string) string { return RequestPath(id) + "/history" }

// SubmitRequest is the body of a POST to PathRequests.
type SubmitRequest struct {
	// ID is a UUID chosen by the client, so that a retry through another rhd stores
	// nothing twice.
	ID string `json:"id"`
	// Type is PUT, GET, PREPARE_TO_GET, PUTDONE or RM.
	Type         string   `json:"type"`
	ServiceClass string   `json:"service_class,omitempty"`
	UserTag      string   `json:"user_tag,omitempty"`
	Paths        []string `json:"paths"`
	// AutoClose closes each written file when its upload ends (pollux cp), so no
	// stager_putdone is needed. PUT only.
	AutoClose bool `json:"auto_close,omitempty"`
	// TransferKeyHash is the SHA-256 (hex, TransferKeyHash) of the client's transfer
	// secret; required for PUT and GET, whose movers serve only "<token>.<secret>".
	TransferKeyHash string `json:"transfer_key_hash,omitempty"`
}

// SubmitResponse answers a POST to PathRequests: 201 when the request was stored now, 200
// (Created false) when this id was stored already by an earlier try.
//
// A POST with ParamWait answers only once the new request first changes (or the wait
// passes), and carries the request as it then is: the first long poll comes for free.
type SubmitResponse struct {
	ID          string `json:"id"`
	Created     bool   `json:"created"`
	Subrequests int    `json:"subrequests"`
	// Request is the request after the wait, when the POST asked to wait.
	Request *Request `json:"request,omitempty"`
}

// Request answers a GET of RequestPath.
type Request struct {
	ID     string `json:"id"`
	Type   string `json:"type"`
	Status string `json:"status"`
	// ServiceClass is the class's name when the server knows it.
	ServiceClass string `json:"service_class,omitempty"`
	UserTag      string `json:"user_tag,omitempty"`
	// UpdatedAt is the last change of the request or of any of its subrequests; give it
	// back as ParamSince to wait for the next change.
	UpdatedAt   time.Time    `json:"updated_at"`
	Subrequests []Subrequest `json:"subrequests"`
}

// Subrequest is one file of a Request.
type Subrequest struct {
	ID     int64  `json:"id"`
	Path   string `json:"path"`
	Status string `json:"status"`
	// Info says in words what the subrequest waits for (e.g. "queued, no disk server
	// available").
	Info string `json:"info,omitempty"`
	// ErrorCode is the SQLSTATE of a failure (PXnnn, see wire.KindOfSQLState).
	ErrorCode    string `json:"error_code,omitempty"`
	ErrorMessage string `json:"error_message,omitempty"`
	// MoverURL is where the data goes (PUT) or comes from (GET) once the subrequest is
	// READY, authorised by Token with the client's transfer secret (TransferCredential),
	// good for one transfer. The client library adds the secret to Token for the requests
	// it submitted, so that Token is then the whole credential.
	MoverURL        string `json:"mover_url,omitempty"`
	Token           string `json:"token,omitempty"`
	SizeBytes       *int64 `json:"size_bytes,omitempty"`
	ChecksumAdler32 string `json:"checksum_adler32,omitempty"`
}

// History answers a GET of HistoryPath: the request as it is, every transition of each of
// its subrequests (oldest first, by subrequest), and what each subrequest that is not over
// waits for.
type History struct {
	Request     Request      `json:"request"`
	Transitions []Transition `json:"transitions"`
	Waits       []Wait       `json:"waits"`
}

// Transition is one change of a subrequest's status, as the database recorded it in the
// transaction that made it.
type Transition struct {
	SubrequestID int64     `json:"subrequest_id"`
	Path         string    `json:"path"`
	At           time.Time `json:"at"`
	// From is empty for the subrequest's creation.
	From string `json:"from,omitempty"`
	To   string `json:"to"`
	// Daemon, InstanceID and Host say which process made the change (InstanceID is
	// empty when the session did not say, e.g. an operator's psql).
	Daemon     string `json:"daemon"`
	InstanceID string `json:"instance_id,omitempty"`
	Host       string `json:"host,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// Wait is what one subrequest waits for now.
type Wait struct {
	SubrequestID int64  `json:"subrequest_id"`
	Path         string `json:"path"`
	Status       string `json:"status"`
	// Since is when it took its status.
	Since time.Time `json:"since"`
	// WaitingFor is empty once the subrequest is over.
	WaitingFor string `json:"waiting_for,omitempty"`
	// QueuePosition is its place in the queue that serves it (1 is next), when it is in one.
	QueuePosition *int64 `json:"queue_position,omitempty"`
	// Behind names what is ahead of it: the subrequest it waits on, or how many are ahead.
	Behind string `json:"behind,omitempty"`
}

// File answers a GET of PathFiles.
type File struct {
	Path         string `json:"path"`
	ServiceClass string `json:"service_class"`
	// Status is STAGED (readable), STAGEOUT (being written) or INVALID (no valid copy).
	Status          string    `json:"status"`
	SizeBytes       *int64    `json:"size_bytes"`
	ChecksumAdler32 *string   `json:"checksum_adler32"`
	Owner           string    `json:"owner"`
	UpdatedAt       time.Time `json:"updated_at"`
	DiskCopies      int32     `json:"disk_copies"`
	// Info says what keeps a STAGED file from being read now ("only copy is on disk2,
	// unavailable since 2026-12-02 05:40:12 UTC (it stopped answering)"); empty when nothing does.
	Info string `json:"info,omitempty"`
}

// Quotas answers a GET of PathQuotas: what the caller holds in each service class where
// it holds something or has a quota, and its limits there.
type Quotas struct {
	User   string  `json:"user"`
	Quotas []Quota `json:"quotas"`
}

// Quota is one user's usage and limits in one service class. A put past a limit fails
// with the error kind quota (wire.ErrorKindQuota).
type Quota struct {
	ServiceClass string `json:"service_class"`
	// Bytes is what the user's copies hold: closed content, and writes whose upload ended
	// but that are not closed yet.
	Bytes int64 `json:"bytes"`
	// Files is how many files the user owns, counting those being written.
	Files int64 `json:"files"`
	// MaxBytes and MaxFiles are the limits; absent when there is none.
	MaxBytes *int64 `json:"max_bytes,omitempty"`
	MaxFiles *int64 `json:"max_files,omitempty"`
}

// UploadResponse is what a mover answers (201) to a completed upload: what it wrote.
type UploadResponse struct {
	SizeBytes       int64  `json:"size_bytes"`
	ChecksumAdler32 string `json:"checksum_adler32"`
}

// ErrorBody is the body of every failed call.
type ErrorBody struct {
	Error Error `json:"error"`
}

// Error describes a failure: its kind (not_found, invalid, conflict, permission,
// unavailable, internal; see wire.ErrorKind), the SQLSTATE when the logic raised it, and
// a message for people.
type Error struct {
	Kind    string `json:"kind"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
}
