package mover

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Transfer directions, the label every transfer metric carries: what an operator asks
// first is whether writes or reads suffer.
const (
	DirectionUpload   = "upload"
	DirectionDownload = "download"
)

// Outcomes of one transfer call, the outcome label of pollux_diskserver_transfers_total.
const (
	// OutcomeOK: the data moved and its end was recorded.
	OutcomeOK = "ok"
	// OutcomeFailed: the transfer failed (its reason recorded): a bad call, a truncated
	// upload, a checksum mismatch, a full or broken file system, a client gone mid-way.
	OutcomeFailed = "failed"
	// OutcomeCorrupt: a download found its copy differing from the catalogue.
	OutcomeCorrupt = "corrupt"
	// OutcomeRefused: the upload's end was refused by the catalogue (removed or given up
	// while it was written); the bytes are discarded.
	OutcomeRefused = "refused"
	// OutcomeAborted: the server stopped under it; the transfer is taken back, not failed.
	OutcomeAborted = "aborted"
	// OutcomeUnrecorded: the data moved but the database could not be told (its outcome
	// is decided by the watcher once the database answers).
	OutcomeUnrecorded = "unrecorded"
)

// Metrics are the mover's transfer metrics. A nil *Metrics counts nothing.
type Metrics struct {
	bytes     *prometheus.CounterVec
	transfers *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	checksum  *prometheus.CounterVec
}

// NewMetrics registers the mover's metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollux_diskserver_transfer_bytes_total",
			Help: "Bytes received from clients (upload) and sent to them (download), whatever the transfer's outcome.",
		}, []string{"direction"}),
		transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollux_diskserver_transfers_total",
			Help: "Transfer calls served with a valid one-time token, by direction and outcome (ok, failed, corrupt, refused, aborted, unrecorded).",
		}, []string{"direction", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pollux_diskserver_transfer_duration_seconds",
			Help: "Time from a transfer call's token check to its end being recorded, by direction.",
			// From a small file on a local client to a large one over a slow link.
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800},
		}, []string{"direction"}),
		checksum: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollux_diskserver_checksum_failures_total",
			Help: "Checksum failures: uploads whose bytes differ from the client's adler32, and downloads whose copy differs from the catalogue (corrupt copies).",
		}, []string{"direction"}),
	}
	for _, c := range []prometheus.Collector{m.bytes, m.transfers, m.duration, m.checksum} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register mover metrics: %w", err)
		}
	}
	// Every series at zero from the start, so that a rate() over a quiet server is 0 and
	// not an absent series.
	for _, d := range []string{DirectionUpload, DirectionDownload} {
		m.bytes.WithLabelValues(d)
		m.checksum.WithLabelValues(d)
		m.duration.WithLabelValues(d)
		for _, o := range []string{OutcomeOK, OutcomeFailed, OutcomeRefused, OutcomeAborted, OutcomeUnrecorded} {
			m.transfers.WithLabelValues(d, o)
		}
	}
	m.transfers.WithLabelValues(DirectionDownload, OutcomeCorrupt)
	return m, nil
}

// observe counts one transfer call once it is over.
func (m *Metrics) observe(direction, outcome string, bytes int64, took time.Duration) {
	if m == nil {
		return
	}
	m.bytes.WithLabelValues(direction).Add(float64(max(bytes, 0)))
	m.transfers.WithLabelValues(direction, outcome).Inc()
	m.duration.WithLabelValues(direction).Observe(took.Seconds())
}

// checksumFailed counts one checksum failure.
func (m *Metrics) checksumFailed(direction string) {
	if m != nil {
		m.checksum.WithLabelValues(direction).Inc()
	}
}

// outcomeOf is the outcome of a call that ended with err and no outcome set on the way:
// a shutdown takes the transfer back, any other error left it unrecorded.
func outcomeOf(err error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, ErrShutdown):
		return OutcomeAborted
	}
	return OutcomeUnrecorded
}
