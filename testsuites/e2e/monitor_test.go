package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"hash/adler32"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/pgcluster"
	"github.com/pollux-storage/pollux/framework/uuid"
	"github.com/pollux-storage/pollux/testsuites/e2e"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write the monitor's screenshots into docs/monitor/ (else into the test's temporary directory)")

// chromium is Debian's package's browser (make test/deps installs it).
const chromium = "/usr/bin/chromium"

// browser starts a headless Chromium with a fresh profile and returns a context driving
// one tab of it, cancelled (the browser stopped) when the test ends.
func browser(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("%s: %v: the browser test needs Debian's chromium (make test/deps, or apt-get install chromium)", chromium, err)
	}
	// The defaults keep timers running in a background tab, which the page's refresh needs.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // root in a container has no user namespace for the sandbox
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	require.NoError(t, chromedp.Do(bctx), "start chromium")
	return bctx
}

// waitPage waits, at most within, until the JavaScript expression cond holds in the page
// as it is: without a reload, so that what changes is what the page's own refresh brought.
func waitPage(t *testing.T, ctx context.Context, cond string, within time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+cond+")"))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			var lerr error
			last, lerr = chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerHTML`))
			if lerr != nil {
				last = lerr.Error()
			}
			t.Fatalf("the page did not show %s within %s (last error: %v); it shows:\n%s", what, within, err, last)
		}
		time.Sleep(50 * time.Millisecond) // the browser is polled: there is no event to wait on
	}
}

// screenshot saves the page as docs/monitor/NAME.png with -update-screenshots, else in dir.
func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	if *updateScreenshots {
		root, err := pgcluster.RepoRoot()
		require.NoError(t, err)
		dir = filepath.Join(root, "docs", "monitor")
		require.NoError(t, os.MkdirAll(dir, 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644))
}

// The monitor in a real browser against a real instance: a put's request moves to
// FINISHED on its page, a killed job manager's heartbeat goes stale, and its lease passes
// to the other, each seen by the page's own refresh, without a reload.
func TestMonitorInABrowser(t *testing.T) {
	t.Parallel()
	fast := []string{"--heartbeat-interval", "300ms"}
	extra := map[string][]string{"monitord": append([]string{"--refresh", "250ms", "--stale-after", "1500ms"}, fast...)}
	for _, d := range []string{"rhd", "stagerd", "jobmanagerd", "schedulerd", "diskserverd"} {
		extra[d] = fast
	}
	in, ctx := start(t, e2e.Options{JobManagers: 2, DiskServers: 1, Monitors: 1, ExtraArgs: extra})
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	shots := t.TempDir()
	base := "http://" + in.Procs()["monitord1"].Addr()
	tab := browser(t, ctx)

	// A put waits for its client; its page follows it to FINISHED. The test is the client:
	// it submits with a transfer secret of its own, so that it can upload later.
	const remote = "/pollux/u/alice/monitored"
	secret, err := api.NewTransferSecret()
	require.NoError(t, err)
	id := uuid.New()
	rhd := "http://" + strings.Split(in.StageHost(), ",")[0]
	sub := api.SubmitRequest{ID: id, Type: "PUT", Paths: []string{remote}, TransferKeyHash: api.TransferKeyHash(secret)}
	body, err := json.Marshal(sub)
	require.NoError(t, err)
	post, err := http.NewRequestWithContext(ctx, http.MethodPost, rhd+api.PathRequests, bytes.NewReader(body))
	require.NoError(t, err)
	post.Header.Set("Authorization", "Bearer "+in.Token)
	resp, err := http.DefaultClient.Do(post)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	require.NoError(t, chromedp.Do(tab, chromedp.Navigate(base+"/requests/"+id)))
	waitPage(t, tab, `document.querySelector('[data-wait]') && document.querySelector('[data-wait]').innerText.includes("waiting for the client")`, 20*time.Second, "the put waiting for its client")
	screenshot(t, tab, shots, "request-waiting")
	// While it waits, the queues page counts it.
	require.NoError(t, chromedp.Do(tab, chromedp.Navigate(base+"/queues")))
	waitPage(t, tab, `document.querySelector('tr[data-status="READY"]')`, 10*time.Second, "the READY subrequest in the queues")
	screenshot(t, tab, shots, "queues")
	require.NoError(t, chromedp.Do(tab, chromedp.Navigate(base+"/requests/"+id)))
	waitPage(t, tab, `document.getElementById("request-status")`, 10*time.Second, "the request page again")

	q := ok(t, in.Run(ctx, in.Env(), "stager_qry", "-r", id, "--json"))
	var req api.Request
	require.NoError(t, json.Unmarshal([]byte(q.Stdout), &req))
	require.Equal(t, "READY", req.Subrequests[0].Status)
	// stager_qry printed the bare token: the credential is the token with the secret.
	data := []byte("bytes the monitor saw arrive\n")
	up, err := http.NewRequestWithContext(ctx, http.MethodPut, req.Subrequests[0].MoverURL, bytes.NewReader(data))
	require.NoError(t, err)
	up.Header.Set("Authorization", "Bearer "+api.TransferCredential(req.Subrequests[0].Token, secret))
	up.Header.Set(api.HeaderAdler32, fmt.Sprintf("%08x", adler32.Checksum(data)))
	resp, err = http.DefaultClient.Do(up)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	waitPage(t, tab, `document.getElementById("request-status").innerText === "FINISHED"`, 20*time.Second, "the request FINISHED")
	waitPage(t, tab, `document.querySelector('.story').innerText.includes("READY\tFINISHED")`, 5*time.Second, "the transition READY to FINISHED in the story")
	screenshot(t, tab, shots, "request")

	// The job manager leading the expire sweep is killed: its heartbeat goes stale and
	// the other takes the lease, on the page as it refreshes itself.
	db, err := pg.Open(ctx, pg.Config{DSN: in.DSN()})
	require.NoError(t, err)
	t.Cleanup(db.Close)
	const lease = "jobmanagerd.expire"
	leader, epoch, err := e2e.WaitLeader(ctx, db, lease, "", 0, 20*time.Second)
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(tab, chromedp.Navigate(base+"/")))
	master := fmt.Sprintf(`document.querySelector('tr[data-lease="%s"] td.master') && document.querySelector('tr[data-lease="%s"] td.master').innerText.startsWith(%q)`, lease, lease, "%s")
	waitPage(t, tab, fmt.Sprintf(master, leader), 10*time.Second, leader+" as master of "+lease)
	standby := "jobmanagerd1"
	if leader == standby {
		standby = "jobmanagerd2"
	}
	waitPage(t, tab, fmt.Sprintf(`document.querySelector('tr[data-lease="%s"]').innerText.includes("reliable: backup %s")`, lease, standby), 10*time.Second, standby+" as backup of "+lease)
	waitPage(t, tab, fmt.Sprintf(`/reliable: backup \([^)]*%s/.test(document.querySelector('tr[data-host="%s"]').innerText)`, strings.ReplaceAll(lease, ".", `\.`), standby), 10*time.Second, standby+"'s row naming it backup")
	screenshot(t, tab, shots, "overview")

	in.Kill(leader, syscall.SIGKILL)
	waitPage(t, tab, fmt.Sprintf(`document.querySelector('tr[data-host="%s"][data-state="stale"]')`, leader), 15*time.Second, leader+"'s heartbeat stale")
	other, _, err := e2e.WaitLeader(ctx, db, lease, leader, epoch, 15*time.Second)
	require.NoError(t, err)
	require.Equal(t, standby, other)
	waitPage(t, tab, fmt.Sprintf(master, other), 10*time.Second, other+" as the new master of "+lease)
	screenshot(t, tab, shots, "overview-after-kill")

	// Every other page renders in the browser.
	for _, p := range []struct{ path, name, sel string }{
		{"/diskservers", "diskservers", `tr[data-disk-server="disk1"]`},
		{"/logic", "logic", "#drift .ok"},
		{"/events", "events", "#events"},
		{"/requests", "requests", `tr[data-request="` + id + `"]`},
	} {
		require.NoError(t, chromedp.Do(tab, chromedp.Navigate(base+p.path)))
		waitPage(t, tab, fmt.Sprintf("document.querySelector(%q)", p.sel), 10*time.Second, p.sel+" on "+p.path)
		screenshot(t, tab, shots, p.name)
	}

	// And in a terminal browser's terms: the same pages are plain HTML without scripts.
	if lynx, err := exec.LookPath("lynx"); err == nil {
		out, err := exec.CommandContext(ctx, lynx, "-dump", base+"/").CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), "reliable: master")
	}
}
