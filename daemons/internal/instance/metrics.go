package instance

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pollux-storage/pollux/framework/daemon"
	"github.com/pollux-storage/pollux/framework/hotpatch"
	"github.com/pollux-storage/pollux/framework/migrate"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/schema"
)

// versionsCacheTTL bounds how often a scrape reads the database: Prometheus and
// `pollux-admin check` may both scrape every few seconds, and the answer changes only when
// an operator migrates or patches.
const versionsCacheTTL = 10 * time.Second

// RegisterMetrics exports, on every daemon, the schema and logic versions this binary was
// built for beside those of the database it runs on, so that a scrape (and so an alert,
// and `pollux-admin check`) sees a daemon left behind by a migration or a hot patch, or
// logic that drifted from the files:
//
//	pollux_schema_binary_version        the migration head this binary needs
//	pollux_schema_database_version      the database's migration version (-1: unreadable)
//	pollux_logic_binary_info{checksum}  1; the checksum of the logic files embedded here
//	pollux_logic_installed_version      the installed logic version (0: none, -1: unreadable)
//	pollux_logic_matches_files          1 when the installed logic is this binary's files, untouched
func RegisterMetrics(env *daemon.Env) error {
	c := &versionCollector{db: env.DB, log: env.Logger("metrics")}
	head, err := migrate.Head(schema.Migrations())
	if err != nil {
		return err
	}
	c.head = float64(head.Schema)
	if c.bundle, err = hotpatch.Load(schema.Logic()); err != nil {
		return err
	}
	return env.Metrics.Register(c)
}

var (
	descSchemaBinary = prometheus.NewDesc("pollux_schema_binary_version",
		"The schema migration version this binary needs.", nil, nil)
	descSchemaDatabase = prometheus.NewDesc("pollux_schema_database_version",
		"The database's schema migration version (-1: it could not be read).", nil, nil)
	descLogicBinary = prometheus.NewDesc("pollux_logic_binary_info",
		"Always 1; its label is the checksum of the SQL logic files this binary embeds.", []string{"checksum"}, nil)
	descLogicInstalled = prometheus.NewDesc("pollux_logic_installed_version",
		"The version of the SQL logic installed in the database (0: none; -1: it could not be read).", nil, nil)
	descLogicMatches = prometheus.NewDesc("pollux_logic_matches_files",
		"1 when the installed SQL logic is this binary's files and nobody changed it by hand since; 0 when it drifted (a hot patch from another directory, a hand edit, an older or newer binary).", nil, nil)
)

// versionCollector reads the database's versions at a scrape, at most once per
// versionsCacheTTL.
type versionCollector struct {
	db     *pg.DB
	log    *zap.Logger
	head   float64
	bundle hotpatch.Bundle

	mu        sync.Mutex
	at        time.Time
	dbVersion float64
	installed float64
	matches   float64
}

func (c *versionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSchemaBinary, descSchemaDatabase, descLogicBinary, descLogicInstalled, descLogicMatches} {
		ch <- d
	}
}

func (c *versionCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if time.Since(c.at) > versionsCacheTTL {
		c.refresh()
	}
	dbVersion, installed, matches := c.dbVersion, c.installed, c.matches
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descSchemaBinary, prometheus.GaugeValue, c.head)
	ch <- prometheus.MustNewConstMetric(descSchemaDatabase, prometheus.GaugeValue, dbVersion)
	ch <- prometheus.MustNewConstMetric(descLogicBinary, prometheus.GaugeValue, 1, c.bundle.Checksum)
	ch <- prometheus.MustNewConstMetric(descLogicInstalled, prometheus.GaugeValue, installed)
	ch <- prometheus.MustNewConstMetric(descLogicMatches, prometheus.GaugeValue, matches)
}

// refresh reads the versions; a database that does not answer within a scrape's usual
// budget gives -1 (and no drift is claimed: 1), so that an outage is the database's alert
// and not a drift alert from every daemon.
func (c *versionCollector) refresh() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c.at = time.Now()
	c.dbVersion, c.installed, c.matches = -1, -1, 1
	st, schemaVersion, err := LogicStatus(ctx, c.db, c.bundle)
	if err != nil {
		c.log.Warn("read schema and logic versions for metrics", zap.Error(err))
		return
	}
	c.dbVersion = float64(schemaVersion)
	c.installed, c.matches = 0, 0
	if st.Installed != nil {
		c.installed = float64(st.Installed.Version)
	}
	if st.Matches {
		c.matches = 1
	}
}
