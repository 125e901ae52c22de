package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/daemons/rhd/rhdtest"
	"github.com/pollux-storage/pollux/schema/schematest"
)

var binary string // rhd, built once

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rhd")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "rhd")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build rhd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestProcess runs rhd as a process, configured from the environment as an operator
// would: it becomes ready, takes a request, answers for it, and drains on SIGTERM.
func TestProcess(t *testing.T) {
	t.Parallel()
	dsn := schematest.DSN(t)
	tokens := rhdtest.WriteTokens(t, map[string]string{"s3cret": "alice"})
	cmd := exec.Command(binary, "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "POLLUX_DATABASE_URL="+dsn, "POLLUX_TOKENS_FILE="+tokens, "POLLUX_LOG_FORMAT=json",
		"POLLUX_TOKEN=the client's, not a typo")
	var log rhdtest.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })

	var addr, admin string
	require.Eventually(t, func() bool {
		for _, m := range log.Lines("request handler listening") {
			addr, _ = m["addr"].(string)
		}
		for _, m := range log.Lines("admin listener up") {
			admin, _ = m["url"].(string)
		}
		return addr != "" && admin != ""
	}, 30*time.Second, 20*time.Millisecond, "rhd never listened:\n%s", &log)
	require.NotContains(t, log.String(), "unknown environment variable", "POLLUX_TOKEN belongs to the clients")

	resp, err := http.Get(admin + "/readyz")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "readyz: %s", body)

	call := func(method, path string, in any) (int, []byte) {
		var r io.Reader
		if in != nil {
			b, err := json.Marshal(in)
			require.NoError(t, err)
			r = bytes.NewReader(b)
		}
		req, err := http.NewRequest(method, "http://"+addr+path, r)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer s3cret")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, b
	}
	id := "6a0e1d44-2c1b-4f7e-8a55-0d9c3b7e2f10"
	status, b := call(http.MethodPost, api.PathRequests, api.SubmitRequest{ID: id, Type: "PUT", Paths: []string{"/pollux/u/alice/f"},
		TransferKeyHash: api.TransferKeyHash("secret")})
	require.Equal(t, http.StatusCreated, status, string(b))
	status, b = call(http.MethodGet, api.RequestPath(id)+"?wait=100ms", nil)
	require.Equal(t, http.StatusOK, status, string(b))
	var got api.Request
	require.NoError(t, json.Unmarshal(b, &got))
	require.Equal(t, id, got.ID)
	require.Equal(t, "START", got.Subrequests[0].Status)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "rhd exits 0 after a clean drain:\n%s", &log)
	case <-time.After(30 * time.Second):
		t.Fatalf("rhd did not exit after SIGTERM:\n%s", &log)
	}
	require.NotEmpty(t, log.Lines("daemon stopped"))
	lines := log.Lines("http request")
	require.Len(t, lines, 2)
	require.Equal(t, id, lines[0]["request_id"])
}
