package client_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/cmd/client"
	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/model"
)

func TestSizeText(t *testing.T) {
	t.Parallel()
	for in, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1 kB", 9_800_000_000: "9.8 GB", 500_000_000: "500 MB",
		123_456_789_012: "123 GB", 10_000_000_000: "10 GB"} {
		require.Equal(t, want, client.SizeText(in), in)
	}
}

// A put past the quota fails with the quota's message and exit code 1, whether the
// decision refuses it (a file too many) or the upload's end (bytes too many); stager_qry
// --quota shows usage and limits.
func TestQuotaRefusalsAndQuery(t *testing.T) {
	t.Parallel()
	c := newCluster(t, true)
	_, err := model.QuotaSet(c.ctx, c.db.Pool(), "alice", "default", new(int64(8000)), new(int64(2)), "test")
	require.NoError(t, err)

	q := c.run(client.Qry, nil, "--quota")
	require.Equal(t, 0, q.code, q.stderr)
	require.Equal(t, "quota alice default: bytes 0 B of 8 kB (0%), files 0 of 2 (0%)\n", q.stdout)

	src, _ := writeRandom(t, 5000)
	put := c.run(client.Pollux, nil, "cp", src, "/pollux/u/alice/one")
	require.Equal(t, 0, put.code, put.stderr)
	over := c.run(client.Pollux, nil, "cp", src, "/pollux/u/alice/two")
	require.Equal(t, 1, over.code, "a quota is the user's to deal with: %s", over.stderr)
	require.Contains(t, over.stderr, "quota exceeded: user alice in service class default has 5 kB of 8 kB, this write of 5 kB needs 2 kB more")

	small, _ := writeRandom(t, 100)
	require.Equal(t, 0, c.run(client.Pollux, nil, "cp", small, "/pollux/u/alice/two").code)
	third := c.run(client.Pollux, nil, "cp", small, "/pollux/u/alice/three")
	require.Equal(t, 1, third.code, third.stderr)
	require.Contains(t, third.stderr, "quota exceeded: user alice in service class default has 2 of 2 files, this put needs 1 more")

	q = c.run(client.Qry, nil, "-M", "/pollux/u/alice/one", "--quota", "--json")
	require.Equal(t, 0, q.code, q.stderr)
	var out struct {
		Files []struct {
			Path string    `json:"path"`
			File *api.File `json:"file"`
		} `json:"files"`
		Quota api.Quotas `json:"quota"`
	}
	require.NoError(t, json.Unmarshal([]byte(q.stdout), &out), q.stdout)
	require.Len(t, out.Files, 1)
	require.Equal(t, "STAGED", out.Files[0].File.Status)
	require.Equal(t, api.Quotas{User: "alice", Quotas: []api.Quota{{ServiceClass: "default", Bytes: 5100, Files: 2,
		MaxBytes: new(int64(8000)), MaxFiles: new(int64(2))}}}, out.Quota)

	bob := c.run(client.Qry, map[string]string{client.EnvToken: "bob-token"}, "--quota")
	require.Equal(t, 0, bob.code, bob.stderr)
	require.Equal(t, "quota bob: nothing held and no quota\n", bob.stdout, "a user sees only its own")
	other := c.run(client.Qry, nil, "--quota", "-S", "tape")
	require.Equal(t, 0, other.code, other.stderr)
	require.Equal(t, "quota alice: nothing held and no quota in tape\n", other.stdout)
}
