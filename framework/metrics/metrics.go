// Package metrics builds a process's Prometheus registry with the standard Go runtime and
// process collectors and a build-info gauge; every other package registers its own metrics
// on the registry it is handed.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a registry with Go, process and build-info metrics.
func NewRegistry(daemon, version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "pollux_build_info",
			Help:        "Always 1; its labels say which daemon and version run.",
			ConstLabels: prometheus.Labels{"daemon": daemon, "version": version},
		}, func() float64 { return 1 }),
	)
	return reg
}

// Handler serves reg in the Prometheus exposition format.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true})
}
