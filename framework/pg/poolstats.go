package pg

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// poolCollector reads pgxpool's statistics at scrape time, so they cost nothing between
// scrapes.
type poolCollector struct {
	pool                                       *pgxpool.Pool
	acquired, idle, total, max                 *prometheus.Desc
	acquireCount, acquireSeconds, emptyAcquire *prometheus.Desc
	newConns, lifetimeDestroyed, idleDestroyed *prometheus.Desc
}

func newPoolCollector(pool *pgxpool.Pool) *poolCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("pollux_db_pool_"+name, help, nil, nil)
	}
	return &poolCollector{
		pool:              pool,
		acquired:          d("acquired_connections", "Connections in use."),
		idle:              d("idle_connections", "Connections idle in the pool."),
		total:             d("total_connections", "Connections open."),
		max:               d("max_connections", "Pool size limit."),
		acquireCount:      d("acquires_total", "Connections handed out."),
		acquireSeconds:    d("acquire_seconds_total", "Time spent waiting for a connection."),
		emptyAcquire:      d("empty_acquires_total", "Acquires that had to wait because the pool was empty."),
		newConns:          d("new_connections_total", "Connections opened."),
		lifetimeDestroyed: d("lifetime_destroyed_total", "Connections closed for reaching their maximum lifetime."),
		idleDestroyed:     d("idle_destroyed_total", "Connections closed for idling too long."),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.acquired, c.idle, c.total, c.max, c.acquireCount, c.acquireSeconds,
		c.emptyAcquire, c.newConns, c.lifetimeDestroyed, c.idleDestroyed} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	k := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	g(c.acquired, float64(s.AcquiredConns()))
	g(c.idle, float64(s.IdleConns()))
	g(c.total, float64(s.TotalConns()))
	g(c.max, float64(s.MaxConns()))
	k(c.acquireCount, float64(s.AcquireCount()))
	k(c.acquireSeconds, s.AcquireDuration().Seconds())
	k(c.emptyAcquire, float64(s.EmptyAcquireCount()))
	k(c.newConns, float64(s.NewConnsCount()))
	k(c.lifetimeDestroyed, float64(s.MaxLifetimeDestroyCount()))
	k(c.idleDestroyed, float64(s.MaxIdleDestroyCount()))
}
