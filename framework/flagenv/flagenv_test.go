package flagenv_test

import (
	"bytes"
	"flag"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/flagenv"
)

func TestName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"database-url": "POLLUX_DATABASE_URL", "put-workers": "POLLUX_PUT_WORKERS", "x": "POLLUX_X"} {
		require.Equal(t, want, flagenv.Name(in))
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	type result struct {
		url     string
		timeout time.Duration
		unknown []string
		err     string
	}
	for _, tc := range []struct {
		name    string
		args    []string
		environ []string
		want    result
	}{
		{"defaults", nil, nil, result{url: "", timeout: time.Second}},
		{"environment fills", nil, []string{"POLLUX_DATABASE_URL=postgres:///a", "POLLUX_DRAIN_TIMEOUT=5s", "HOME=/root"},
			result{url: "postgres:///a", timeout: 5 * time.Second}},
		{"flag wins over environment", []string{"--database-url", "postgres:///flag"}, []string{"POLLUX_DATABASE_URL=postgres:///env"},
			result{url: "postgres:///flag", timeout: time.Second}},
		{"unknown variables reported, ignored ones not", nil, []string{"POLLUX_DATABSE_URL=x", "POLLUX_TEST_DATABASE_URL=y"},
			result{timeout: time.Second, unknown: []string{"POLLUX_DATABSE_URL"}}},
		{"bad value named", nil, []string{"POLLUX_DRAIN_TIMEOUT=soon"}, result{err: `environment POLLUX_DRAIN_TIMEOUT="soon"`}},
		{"stray argument", []string{"extra"}, nil, result{err: `unexpected argument "extra"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			url := fs.String("database-url", "", "")
			timeout := fs.Duration("drain-timeout", time.Second, "")
			unknown, err := flagenv.Parse(fs, tc.args, tc.environ, map[string]bool{"POLLUX_TEST_DATABASE_URL": true})
			if tc.want.err != "" {
				require.ErrorContains(t, err, tc.want.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, result{url: *url, timeout: *timeout, unknown: unknown})
		})
	}
}

func TestPrintHelpNamesEveryFlagAndVariable(t *testing.T) {
	t.Parallel()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.String("database-url", "", "Where the database is.")
	fs.Int("put-workers", 4, "Put workers.")
	var b bytes.Buffer
	flagenv.PrintHelp(&b, "stagerd", "decides", "stagerd [flags]", "", fs)
	for _, want := range []string{"stagerd — decides", "--database-url string    (POLLUX_DATABASE_URL)", "Where the database is.",
		"--put-workers int    (POLLUX_PUT_WORKERS)", `(default "4")`} {
		require.Contains(t, b.String(), want)
	}
}
