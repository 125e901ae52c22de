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

// WithUser returns dsn connecting as user, without the password dsn may carry (another
// role's password is no use to this one; give it with WithParam "passfile" or
// "password").
func WithUser(dsn, user string) (string, error) {
	if isURL(dsn) {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("parse database url: %w", err)
		}
		u.User = url.User(user)
		q := u.Query()
		q.Del("user")
		q.Del("password")
		u.RawQuery = encodeQuery(q)
		return u.String(), nil
	}
	// In key=value form the last of a repeated key wins; an empty password cancels one
	// given earlier.
	return dsn + " user=" + kvQuote(user) + " password=''", nil
}

// WithParam returns dsn with the connection parameter key set to value (e.g. passfile, or
// options to set a server setting for the session).
func WithParam(dsn, key, value string) (string, error) {
	if isURL(dsn) {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("parse database url: %w", err)
		}
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = encodeQuery(q)
		return u.String(), nil
	}
	return dsn + " " + key + "=" + kvQuote(value), nil
}

func isURL(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// kvQuote quotes a value of the key=value form.
func kvQuote(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// encodeQuery encodes a URL's parameters for pgconn, which reads them with path
// unescaping, where + is no space: a space is spelled %20 (a + of a value itself is %2B
// by then).
func encodeQuery(q url.Values) string { return strings.ReplaceAll(q.Encode(), "+", "%20") }
