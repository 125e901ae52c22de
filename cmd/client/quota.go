package client

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
)

// SizeText writes a number of bytes for people in decimal units, as the logic's quota
// messages do (schema/logic/quota.sql): 9.8 GB, 500 MB, 512 B.
func SizeText(n int64) string {
	v := float64(n)
	for _, u := range []struct {
		unit  string
		above float64
	}{{"EB", 1e18}, {"PB", 1e15}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"kB", 1e3}} {
		if v >= u.above {
			x, digits := v/u.above, 1
			if x >= 100 {
				digits = 0
			}
			return strings.TrimSuffix(strconv.FormatFloat(x, 'f', digits, 64), ".0") + " " + u.unit
		}
	}
	return strconv.FormatInt(n, 10) + " B"
}

// quotaLine is stager_qry --quota's line for one service class:
// "quota alice default: bytes 9.8 GB of 10 GB (98%), files 12 of 1000 (1%)".
func quotaLine(user string, q api.Quota) string {
	part := func(n int64, limit *int64, text func(int64) string) string {
		if limit == nil {
			return text(n) + " (no limit)"
		}
		share := "full"
		if *limit > 0 {
			share = fmt.Sprintf("%.0f%%", 100*float64(n)/float64(*limit))
		}
		return fmt.Sprintf("%s of %s (%s)", text(n), text(*limit), share)
	}
	return fmt.Sprintf("quota %s %s: bytes %s, files %s", user, q.ServiceClass,
		part(q.Bytes, q.MaxBytes, SizeText), part(q.Files, q.MaxFiles, func(n int64) string { return strconv.FormatInt(n, 10) }))
}
