package main

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/pollux-storage/pollux/cmd/client"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
)

func init() {
	commands["quota"] = command{
		"users' quotas per service class, in bytes and files, with what each user holds (no quota: unlimited)",
		"quota ls [USER] | quota set USER [--bytes SIZE|none] [--files N|none] | quota rm USER [--service-class default] [--json]",
		cmdQuota}
}

const quotaUsage = "quota: use ls [USER], set USER --bytes SIZE --files N (either or both; none for no limit), rm USER"

// cmdQuota manages quotas. The limits and the usage live in the database
// (schema/logic/quota.sql), whose functions check the input and journal every change
// with the operator's name; this command reads the command line and prints.
func cmdQuota(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("quota", true)
	class := fs.String("service-class", "default", "The service class of the quota (set, rm; ls shows every class).")
	bytesArg := fs.String("bytes", "", "set: the most bytes the user's files may hold, e.g. 500GB, 2TiB, 1000000 (bytes); none for no limit. Left as it is when not given.")
	filesArg := fs.String("files", "", "set: the most files the user may own; none for no limit. Left as it is when not given.")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return usageError{quotaUsage}
	}
	action, rest := rest[0], rest[1:]
	by := "pollux-admin (" + operator() + ")"
	var list []model.QuotaListRow
	var run func(q pg.Querier) error
	switch {
	case action == "ls" && len(rest) <= 1:
		var user *string
		if len(rest) == 1 {
			user = &rest[0]
		}
		run = func(q pg.Querier) (err error) {
			list, err = model.QuotaList(ctx, q, user)
			return err
		}
	case action == "set" && len(rest) == 1:
		if *bytesArg == "" && *filesArg == "" {
			return usageError{fmt.Sprintf("quota set %s: give --bytes, --files or both", rest[0])}
		}
		maxBytes, err := parseLimit(*bytesArg, parseSize)
		if err != nil {
			return usageError{fmt.Sprintf("quota set %s: --bytes %v", rest[0], err)}
		}
		maxFiles, err := parseLimit(*filesArg, func(s string) (int64, error) {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("%q is not a number of files (0 or more) or none", s)
			}
			return n, nil
		})
		if err != nil {
			return usageError{fmt.Sprintf("quota set %s: --files %v", rest[0], err)}
		}
		run = func(q pg.Querier) error {
			// A limit not given stays as it is: read in the same transaction as the set.
			old, err := model.QuotaList(ctx, q, &rest[0])
			if err != nil {
				return err
			}
			for _, o := range old {
				if o.ServiceClass != *class {
					continue
				}
				if *bytesArg == "" {
					maxBytes = o.MaxBytes
				}
				if *filesArg == "" {
					maxFiles = o.MaxFiles
				}
			}
			rows, err := model.QuotaSet(ctx, q, rest[0], *class, maxBytes, maxFiles, by)
			list = nil // a retried transaction starts again
			for _, r := range rows {
				// The same columns (one anchor in schema/pollux.yaml), hence the conversion.
				list = append(list, model.QuotaListRow(r))
			}
			return err
		}
	case action == "rm" && len(rest) == 1:
		run = func(q pg.Querier) error { return model.QuotaRemove(ctx, q, rest[0], *class, by) }
	default:
		return usageError{fmt.Sprintf("quota %s: unknown action or wrong arguments (%s)", strings.Join(append([]string{action}, rest...), " "), quotaUsage)}
	}
	db, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Tx(ctx, "quota "+action, run); err != nil {
		return err
	}
	if action == "rm" {
		fmt.Fprintf(c.stdout, "%s has no quota in %s now: unlimited\n", rest[0], *class)
		return nil
	}
	if c.jsonOut {
		return c.printJSON(list)
	}
	var rows [][]string
	for _, u := range list {
		rows = append(rows, []string{u.UserName, u.ServiceClass, sizeText(&u.Bytes), sizeText(u.MaxBytes), used(u.Bytes, u.MaxBytes),
			strconv.FormatInt(u.Files, 10), limitText(u.MaxFiles), used(u.Files, u.MaxFiles)})
	}
	c.table("USER\tSVCCLASS\tBYTES\tMAX BYTES\tUSED\tFILES\tMAX FILES\tUSED", rows)
	return nil
}

// parseLimit reads a limit: none (or unlimited) is no limit, anything else goes to parse.
// An empty flag is no limit too; the caller keeps the old one then.
func parseLimit(s string, parse func(string) (int64, error)) (*int64, error) {
	if s == "" || s == "none" || s == "unlimited" {
		return nil, nil
	}
	n, err := parse(s)
	if err != nil {
		return nil, err
	}
	return &n, nil
}

// sizeUnits are the suffixes parseSize takes: decimal as disks are sold (the logic's
// messages print decimal units), binary for those who count so.
var sizeUnits = []struct {
	suffix string
	factor float64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"PiB", 1 << 50},
	{"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"PB", 1e15},
	{"B", 1},
}

// parseSize reads a number of bytes: 1000, 500GB, 1.5TB, 2TiB.
func parseSize(s string) (int64, error) {
	num, factor := strings.TrimSpace(s), 1.0
	for _, u := range sizeUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, factor = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.factor
			break
		}
	}
	if n, err := strconv.ParseInt(num, 10, 64); err == nil && factor == 1 && n >= 0 {
		return n, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f*factor >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is not a size: a number of bytes, or one with a unit (kB, MB, GB, TB, PB, KiB ... PiB), or none", s)
	}
	return int64(math.Round(f * factor)), nil
}

// sizeText prints a number of bytes as the clients and the logic's messages do.
func sizeText(n *int64) string {
	if n == nil {
		return "unlimited"
	}
	return client.SizeText(*n)
}

func limitText(n *int64) string {
	if n == nil {
		return "unlimited"
	}
	return strconv.FormatInt(*n, 10)
}

// used is the share of a limit in use, "-" without one.
func used(n int64, limit *int64) string {
	switch {
	case limit == nil:
		return "-"
	case *limit == 0:
		if n == 0 {
			return "0%"
		}
		return "over"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(n)/float64(*limit))
}
