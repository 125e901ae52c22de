package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// Target is one daemon a Prometheus scrapes: its admin listener and its role (the label
// the shipped alert rules group by).
type Target struct {
	Role, Addr string
}

// Prometheus is a prometheus process scraping an instance with the shipped configuration.
type Prometheus struct {
	// URL is its HTTP API, http://addr:port.
	URL string

	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	out  bytes.Buffer
}

// prometheusPort is the port prometheus binds, at a random loopback address: it cannot
// report a port the kernel chose.
const prometheusPort = 9090

// StartPrometheus runs prometheus (from PATH) with the shipped configuration
// (configDir/prometheus.yml and the rules it names), its targets replaced by targets and
// its intervals shortened to interval, storing its data under dir, and waits until it is
// ready. It is stopped with Stop.
func StartPrometheus(ctx context.Context, configDir, dir string, targets []Target, interval time.Duration) (*Prometheus, error) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		return nil, fmt.Errorf("prometheus not found (make prometheus/install installs Debian's prometheus package): %w", err)
	}
	config, err := prometheusConfig(configDir, targets, interval)
	if err != nil {
		return nil, err
	}
	file := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(file, config, 0o644); err != nil {
		return nil, err
	}
	var last error
	for range 5 {
		addr := fmt.Sprintf("%s:%d", RandomLoopback(), prometheusPort)
		p := &Prometheus{URL: "http://" + addr, done: make(chan struct{})}
		p.cmd = exec.Command(bin, "--config.file="+file, "--storage.tsdb.path="+filepath.Join(dir, "data"),
			"--web.listen-address="+addr, "--log.level=info")
		p.cmd.Stdout, p.cmd.Stderr = p, p
		if err := p.cmd.Start(); err != nil {
			return nil, fmt.Errorf("start prometheus: %w", err)
		}
		go func() { _ = p.cmd.Wait(); close(p.done) }()
		err := p.waitReady(ctx)
		if err == nil {
			return p, nil
		}
		p.Stop()
		last = err
		if !strings.Contains(p.Output(), "address already in use") {
			break
		}
	}
	return nil, last
}

// prometheusConfig is the shipped configuration with the test's targets, intervals and an
// absolute path to the rules: what is checked is the file operators copy.
func prometheusConfig(configDir string, targets []Target, interval time.Duration) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(configDir, "prometheus.yml"))
	if err != nil {
		return nil, err
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("parse %s/prometheus.yml: %w", configDir, err)
	}
	global, _ := cfg["global"].(map[string]any)
	if global == nil {
		return nil, errors.New("prometheus.yml has no global section")
	}
	global["scrape_interval"], global["evaluation_interval"], global["scrape_timeout"] = interval.String(), interval.String(), interval.String()
	rules, _ := cfg["rule_files"].([]any)
	for i, r := range rules {
		if s, ok := r.(string); ok && !filepath.IsAbs(s) {
			rules[i] = filepath.Join(configDir, s)
		}
	}
	scrapes, _ := cfg["scrape_configs"].([]any)
	if len(scrapes) != 1 {
		return nil, fmt.Errorf("prometheus.yml has %d scrape configs, the test knows one", len(scrapes))
	}
	job, _ := scrapes[0].(map[string]any)
	if job == nil {
		return nil, errors.New("prometheus.yml: a scrape config is not a map")
	}
	var groups []any
	for _, t := range targets {
		groups = append(groups, map[string]any{"targets": []string{t.Addr}, "labels": map[string]string{"role": t.Role}})
	}
	job["static_configs"] = groups
	return yaml.Marshal(cfg)
}

func (p *Prometheus) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// Output is what prometheus wrote so far.
func (p *Prometheus) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *Prometheus) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/-/ready", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("prometheus exited before it was ready:\n%s", p.Output())
		case <-ctx.Done():
			return fmt.Errorf("prometheus not ready at %s: %w\n%s", p.URL, ctx.Err(), p.Output())
		case <-tick.C:
		}
	}
}

// Sample is one series of an instant query's answer.
type Sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// Query runs an instant query through the HTTP API.
func (p *Prometheus) Query(ctx context.Context, query string) ([]Sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/api/v1/query?"+url.Values{"query": {query}}.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string   `json:"resultType"`
			Result     []Sample `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("query %q: %w", query, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", query, body.Error)
	}
	return body.Data.Result, nil
}

// Rules is how many alerting rules prometheus loaded.
func (p *Prometheus) Rules(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/api/v1/rules?type=alert", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Groups []struct {
				Rules []json.RawMessage `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	n := 0
	for _, g := range body.Data.Groups {
		n += len(g.Rules)
	}
	return n, nil
}

// Stop stops prometheus and waits for it.
func (p *Prometheus) Stop() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}
