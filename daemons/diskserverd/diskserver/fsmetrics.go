package diskserver

import (
	"errors"
	"os"

	"github.com/prometheus/client_golang/prometheus"
)

// probePattern names the file a scrape creates and removes on each file system to learn
// that it takes writes: unique per scrape (two scrapers at once must not remove each
// other's), ending in neither .part nor a copy's name, so that the garbage collector and
// the mover never take it for data.
const probePattern = ".pollux-write-probe-*"

var (
	descFSPresent = prometheus.NewDesc("pollux_diskserver_file_system_present",
		"1 when the file system's data directory exists and is a directory.", []string{"disk_server", "mount_point"}, nil)
	descFSWritable = prometheus.NewDesc("pollux_diskserver_file_system_writable",
		"1 when a file could be created, flushed and removed in the data directory at this scrape.", []string{"disk_server", "mount_point"}, nil)
	descFSFree = prometheus.NewDesc("pollux_diskserver_file_system_free_bytes",
		"Bytes an unprivileged writer may still use, as statfs says at this scrape (what the heartbeat reports to the database).", []string{"disk_server", "mount_point"}, nil)
	descFSCapacity = prometheus.NewDesc("pollux_diskserver_file_system_capacity_bytes",
		"Size of the file system, as statfs says at this scrape.", []string{"disk_server", "mount_point"}, nil)
)

// fsCollector looks at the disk server's file systems at each scrape, so that an operator
// (and `pollux-admin check`) learns from the host itself, not from what the database was
// last told, whether each is there, takes writes and has the space it reports.
type fsCollector struct {
	name   string
	mounts []string
}

func (c fsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descFSPresent, descFSWritable, descFSFree, descFSCapacity} {
		ch <- d
	}
}

func (c fsCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.mounts {
		present, writable := 0.0, 0.0
		if st, err := os.Stat(m); err == nil && st.IsDir() {
			present = 1
			if probe(m) == nil {
				writable = 1
			}
		}
		ch <- prometheus.MustNewConstMetric(descFSPresent, prometheus.GaugeValue, present, c.name, m)
		ch <- prometheus.MustNewConstMetric(descFSWritable, prometheus.GaugeValue, writable, c.name, m)
		// A file system statfs cannot read has no series: absent, not a made-up 0.
		if capacity, free, err := space(m); err == nil {
			ch <- prometheus.MustNewConstMetric(descFSFree, prometheus.GaugeValue, float64(free), c.name, m)
			ch <- prometheus.MustNewConstMetric(descFSCapacity, prometheus.GaugeValue, float64(capacity), c.name, m)
		}
	}
}

// probe writes, flushes and removes a small file in dir: a read-only remount, a full
// inode table or a dead device fails one of the three.
func probe(dir string) error {
	f, err := os.CreateTemp(dir, probePattern)
	if err != nil {
		return err
	}
	p := f.Name()
	_, werr := f.Write([]byte("pollux\n"))
	serr := f.Sync()
	cerr := f.Close()
	rerr := os.Remove(p)
	return errors.Join(werr, serr, cerr, rerr)
}
