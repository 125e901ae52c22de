package requesthandler

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// What rhd does to the text it is sent, and what it leaves to SQL.
//
// PostgreSQL's text holds valid UTF-8 without NUL: anything else is refused by the server
// itself (SQLSTATE 22021), which rhd would report as an internal error (500). So rhd
// refuses those two here, naming the field and the byte, before the database is touched.
// It also writes every path in Unicode NFC, so that "é" typed as one code point (macOS
// keyboards, most Linux tools) and as "e" + U+0301 (what macOS's file system hands back)
// name one file, not two that look the same.
//
// Which characters a name may hold is policy and lives in namespace_path_problem
// (schema/logic/namespace.sql): control and invisible formatting characters, U+FFFD and
// a path not in NFC are refused there, so that no caller that skips rhd can store one.

// textProblem says why s cannot be stored as PostgreSQL text, or returns "" when it can.
// what names the field for the message ("path 2", "user_tag").
func textProblem(what, s string) string {
	if !utf8.ValidString(s) {
		for i := 0; i < len(s); {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n <= 1 {
				return fmt.Sprintf("%s is not valid UTF-8 (byte %d is 0x%02x): send names as UTF-8", what, i, s[i])
			}
			i += n
		}
	}
	if i := strings.IndexByte(s, 0); i >= 0 {
		return fmt.Sprintf("%s contains a NUL byte (at byte %d): names may not contain control characters", what, i)
	}
	return ""
}

// cleanPath returns path in NFC, or an error naming what makes it unstorable; what names
// the path for the message.
func cleanPath(what, path string) (string, *httpError) {
	if p := textProblem(what, path); p != "" {
		return "", invalid("%s", p)
	}
	// norm.NFC.String returns path itself when it is NFC already (the common case), so the
	// check costs no allocation.
	return norm.NFC.String(path), nil
}

// cleanPaths is cleanPath for every path of a request, counted from 1 as the client lists
// them; it returns a new slice, so the caller's stays as sent.
func cleanPaths(paths []string) ([]string, *httpError) {
	out := make([]string, len(paths))
	for i, p := range paths {
		c, herr := cleanPath(fmt.Sprintf("path %d", i+1), p)
		if herr != nil {
			return nil, herr
		}
		out[i] = c
	}
	return out, nil
}
