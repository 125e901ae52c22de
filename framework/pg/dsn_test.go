package pg_test

import (
	"net"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/pg"
)

// WithDatabase changes only the database of a DSN: a multi-host DSN keeps every host, its
// ports and target_session_attrs, so that a connection still goes to whichever node is
// primary.
func TestWithDatabaseKeepsEveryHost(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, dsn string
		hosts     []string
	}{
		{"url", "postgres://pollux@127.1.2.2:5432,127.1.2.3:5433/pollux?target_session_attrs=read-write&sslmode=disable",
			[]string{"127.1.2.2:5432", "127.1.2.3:5433"}},
		{"url with dbname in the query", "postgresql://u@a:5432,b:5432/x?dbname=x&sslmode=disable&target_session_attrs=read-write",
			[]string{"a:5432", "b:5432"}},
		{"key value", "host=127.1.2.2,127.1.2.3 port=5432,5433 user=pollux dbname=pollux sslmode=disable target_session_attrs=read-write",
			[]string{"127.1.2.2:5432", "127.1.2.3:5433"}},
		{"key value, one port for all", "host=a,b port=6000 sslmode=disable target_session_attrs=read-write",
			[]string{"a:6000", "b:6000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dsn, err := pg.WithDatabase(tc.dsn, "other")
			require.NoError(t, err)
			cfg, err := pgconn.ParseConfig(dsn)
			require.NoError(t, err, dsn)
			require.Equal(t, "other", cfg.Database, dsn)
			got := []string{hostPort(cfg.Host, cfg.Port)}
			for _, fb := range cfg.Fallbacks {
				got = append(got, hostPort(fb.Host, fb.Port))
			}
			require.Equal(t, tc.hosts, got)
			require.NotNil(t, cfg.ValidateConnect, "target_session_attrs=read-write was dropped: %s", dsn)
		})
	}
}

func hostPort(h string, p uint16) string { return net.JoinHostPort(h, strconv.Itoa(int(p))) }

// WithUser and WithParam change one thing of a DSN in either form: the user (dropping a
// password the DSN had, which belongs to the other role) and a connection parameter
// (options reaches the server as its startup setting).
func TestWithUserAndParam(t *testing.T) {
	t.Parallel()
	for _, dsn := range []string{
		"postgres://pollux:secret@127.1.2.2:5432/pollux?sslmode=disable&password=also",
		"host=127.1.2.2 port=5432 user=pollux password=secret dbname=pollux sslmode=disable",
	} {
		t.Run(dsn[:8], func(t *testing.T) {
			t.Parallel()
			got, err := pg.WithUser(dsn, "pollux_rhd")
			require.NoError(t, err)
			got, err = pg.WithParam(got, "options", "-c pollux.role_prefix=x_")
			require.NoError(t, err)
			cfg, err := pgconn.ParseConfig(got)
			require.NoError(t, err, got)
			require.Equal(t, "pollux_rhd", cfg.User, got)
			require.Empty(t, cfg.Password, got)
			require.Equal(t, "pollux", cfg.Database, got)
			require.Equal(t, "-c pollux.role_prefix=x_", cfg.RuntimeParams["options"], got)
		})
	}
}
