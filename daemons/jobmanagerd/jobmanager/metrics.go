package jobmanager

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pollux-storage/pollux/framework/daemon"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
)

// The queue gauges, read from subrequest_queue_stats at each scrape. Every job manager
// exports them (they are the database's, the same on each): an alert takes their max, so
// that one job manager down leaves the alert working. The job manager exports them because
// it is off the fast path and already the role that watches work that stopped moving.
var (
	descQueueSubrequests = prometheus.NewDesc("pollux_queue_subrequests",
		"Subrequests in each status that is not final, by request type (from the database at the scrape).", []string{"status", "type"}, nil)
	descQueueOldest = prometheus.NewDesc("pollux_queue_oldest_seconds",
		"Seconds since the subrequest waiting longest in each status that is not final changed status, by request type (0 when none waits).", []string{"status", "type"}, nil)
	descQueueUp = prometheus.NewDesc("pollux_queue_scrape_ok",
		"1 when the queue gauges could be read from the database at this scrape.", nil, nil)
)

// queueCollector reads the queues at each scrape, within a bound shorter than a scrape's
// timeout, so that a slow database makes the series absent (pollux_queue_scrape_ok 0)
// rather than the whole scrape fail.
type queueCollector struct {
	db  *pg.DB
	log *zap.Logger
}

func registerQueueMetrics(env *daemon.Env) error {
	return env.Metrics.Register(queueCollector{db: env.DB, log: env.Logger("metrics")})
}

func (c queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descQueueSubrequests
	ch <- descQueueOldest
	ch <- descQueueUp
}

func (c queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var rows []model.SubrequestQueueStatsRow
	err := c.db.DoIdempotent(ctx, "queue stats", func(q pg.Querier) (err error) {
		rows, err = model.SubrequestQueueStats(ctx, q)
		return err
	})
	if err != nil {
		c.log.Warn("read queue stats for metrics", zap.Error(err))
		ch <- prometheus.MustNewConstMetric(descQueueUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descQueueUp, prometheus.GaugeValue, 1)
	for _, r := range rows {
		ch <- prometheus.MustNewConstMetric(descQueueSubrequests, prometheus.GaugeValue, float64(r.Subrequests), r.Status, r.Type)
		ch <- prometheus.MustNewConstMetric(descQueueOldest, prometheus.GaugeValue, r.OldestSeconds, r.Status, r.Type)
	}
}
