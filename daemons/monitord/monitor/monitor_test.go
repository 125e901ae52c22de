package monitor_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pollux-storage/pollux/daemons/monitord/monitor"
	"github.com/pollux-storage/pollux/daemons/rhd/rhdtest"
	"github.com/pollux-storage/pollux/framework/daemon"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/uuid"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema/schematest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startMonitor runs monitord in-process against dsn and returns its pages' base URL.
func startMonitor(t *testing.T, dsn string, flags ...string) string {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	log := &rhdtest.Buffer{}
	exited := make(chan int, 1)
	args := append([]string{"--listen", "127.0.0.1:0", "--log-format", "json", "--drain-timeout", "5s", "--host", "mon-host"}, flags...)
	go func() {
		exited <- daemon.Run(ctx, args, []string{"POLLUX_DATABASE_URL=" + dsn}, io.Discard, log, monitor.Spec("test"))
	}()
	t.Cleanup(func() {
		stop()
		require.Equal(t, 0, <-exited, log.String())
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, m := range log.Lines("monitor listening") {
			if u, ok := m["url"].(string); ok {
				return u
			}
		}
		select {
		case code := <-exited:
			exited <- code
			t.Fatalf("monitord exited %d before listening:\n%s", code, log)
		case <-time.After(10 * time.Millisecond):
		}
		require.True(t, time.Now().Before(deadline), "monitord did not listen within 30s:\n%s", log)
	}
}

func fetch(t *testing.T, url string, fragment bool) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if fragment {
		req.Header.Set(monitor.HeaderFragment, "1")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestPagesShowTheInstance(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := schematest.DSN(t)
	db, err := pg.Open(ctx, pg.Config{DSN: dsn})
	require.NoError(t, err)
	t.Cleanup(db.Close)
	// A generous probe: the first /readyz checks the catalogue, slow under the race detector.
	base := startMonitor(t, dsn, "--probe-timeout", "20s")

	ds, err := model.DiskServerRegister(ctx, db.Pool(), "ds1", "http://ds1:9100", 0.25)
	require.NoError(t, err)
	_, err = model.FileSystemRegister(ctx, db.Pool(), ds, "/data/ds1", "default", 1<<40, 1<<39)
	require.NoError(t, err)
	_, err = model.DiskServerRegister(ctx, db.Pool(), "ds2", "http://ds2:9100", 0)
	require.NoError(t, err)
	id := uuid.New()
	_, err = model.RequestSubmit(ctx, db.Pool(), id, model.RequestTypePut, "default", "alice", "", "test", []string{"/pollux/m"}, false, nil, nil)
	require.NoError(t, err)

	code, body := fetch(t, base+"/", false)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `data-role="monitord"`, "it lists itself")
	require.Contains(t, body, `data-host="mon-host"`)
	require.Contains(t, body, `<main id="live">`)
	require.Contains(t, body, "X-Pollux-Fragment", "the page refreshes itself")
	require.Contains(t, body, `<meta http-equiv="refresh" content="2">`, "and reloads without JavaScript")
	require.Regexp(t, `data-state="live">(.|\n)*?ready</td>`, body, "its /readyz was asked")

	code, frag := fetch(t, base+"/", true)
	require.Equal(t, http.StatusOK, code)
	require.NotContains(t, frag, "<html", "a fragment is the live part alone")
	require.Contains(t, frag, `id="instances"`)

	_, body = fetch(t, base+"/queues", false)
	require.Contains(t, body, `<tr data-status="START"><td>START</td><td>default</td><td>1</td>`)
	require.Contains(t, body, "/requests/"+id)
	require.Contains(t, body, "<td>(new)</td><td>START</td>", "the claim rates count the new subrequest")

	_, body = fetch(t, base+"/diskservers", false)
	require.Contains(t, body, `data-disk-server="ds1"`)
	require.Contains(t, body, "/data/ds1")
	require.Contains(t, body, "512.0 GiB (50%)")
	require.Contains(t, body, "no file system registered", "ds2 has none")

	_, body = fetch(t, base+"/logic", false)
	require.Contains(t, body, `<td id="drift"><span class="ok">matches</span>`)
	require.Contains(t, body, "by schematest")
	require.Contains(t, body, `<span class="ok">at head</span>`)

	_, body = fetch(t, base+"/events", false)
	require.Contains(t, body, "monitord")

	_, body = fetch(t, base+"/requests", false)
	require.Contains(t, body, `data-request="`+id+`"`)
	code, body = fetch(t, base+"/requests/"+id, false)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `<span id="request-status" class="PENDING">PENDING</span>`)
	require.Contains(t, body, "waiting for a stager of the put family to decide it, position 1 in its queue")
	require.Contains(t, body, "<td>(new)</td><td class=\"START\">START</td>")

	code, body = fetch(t, base+"/requests?id=+"+id+"+", false)
	require.Equal(t, http.StatusOK, code, "the search box without JavaScript leads to the request")
	require.Contains(t, body, `<span id="request-status" class="PENDING">PENDING</span>`)

	code, body = fetch(t, base+"/requests/"+strings.ToUpper(uuid.New()), false)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "No request")
	code, body = fetch(t, base+"/requests/nope", false)
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, `"nope" is not a request id`)
	code, _ = fetch(t, base+"/nothing-here", false)
	require.Equal(t, http.StatusNotFound, code)
}

func TestBadFlagsAreRefused(t *testing.T) {
	t.Parallel()
	var stderr rhdtest.Buffer
	code := daemon.Run(context.Background(), []string{"--refresh", "1ms"}, []string{"POLLUX_DATABASE_URL=" + schematest.DSN(t)}, io.Discard, &stderr, monitor.Spec("test"))
	require.NotZero(t, code)
	require.Contains(t, stderr.String(), "--refresh must be at least 100ms")
}
