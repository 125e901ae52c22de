package pg

import (
	"fmt"
	"net/url"
	"strings"
)

// WithDatabase returns dsn with its database name replaced; it accepts URL and key=value
// forms, with one host or several (every host, port and parameter is kept).
func WithDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("parse database url: %w", err)
		}
		u.Path = "/" + name
		// A dbname parameter would win over the path.
		if q := u.Query(); q.Has("dbname") {
			q.Del("dbname")
			u.RawQuery = q.Encode()
		}
		return u.String(), nil
	}
	return dsn + " dbname=" + name, nil
}
