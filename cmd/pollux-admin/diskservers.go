package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
)

// Registered here, not in the table of main.go, so that the table's columns stay as they
// are (gofmt aligns them on the longest name).
func init() {
	commands["diskservers"] = command{
		"list the disk servers: status, availability (AVAILABLE, SILENT, STOPPED) and since when, transfers, space; drain, return or disable one",
		"diskservers [--json] | diskservers drain|return|disable NAME", cmdDiskServers}
}

// cmdDiskServers lists the disk servers as the logic sees them: the operator's status,
// whether each can take transfers now (AVAILABLE, SILENT: its heartbeat stopped, STOPPED:
// its daemon was stopped) and since when, and what is placed on it and moving there.
func cmdDiskServers(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("diskservers", true)
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	var set model.DiskServerStatus
	switch {
	case len(rest) == 0:
	case len(rest) == 2 && rest[0] == "drain":
		set = model.DiskServerStatusDraining
	case len(rest) == 2 && rest[0] == "return":
		set = model.DiskServerStatusProduction
	case len(rest) == 2 && rest[0] == "disable":
		set = model.DiskServerStatusDisabled
	default:
		return usageError{fmt.Sprintf("diskservers %s: use diskservers [--json], or diskservers drain|return|disable NAME", strings.Join(rest, " "))}
	}
	db, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	if set != "" {
		return setDiskServerStatus(ctx, c, db, rest[1], set)
	}
	var list []model.DiskServerListRow
	if err := db.Do(ctx, "list disk servers", func(q pg.Querier) (err error) {
		list, err = model.DiskServerList(ctx, q)
		return err
	}); err != nil {
		return err
	}
	if c.jsonOut {
		return c.printJSON(list)
	}
	var rows [][]string
	for _, d := range list {
		since, why := "-", "-"
		if d.UnavailableSince != nil {
			since = d.UnavailableSince.UTC().Format(time.DateTime) + " UTC"
		}
		if d.Why != nil {
			why = *d.Why
		}
		rows = append(rows, []string{d.Name, string(d.Status), string(d.Availability), since,
			(time.Duration(d.HeartbeatAgeSeconds * float64(time.Second))).Round(100 * time.Millisecond).String(),
			fmt.Sprint(d.Scheduled), fmt.Sprint(d.Ready), fmt.Sprint(d.FileSystems), fmt.Sprintf("%.1f GiB", float64(d.FreeBytes)/(1<<30)),
			d.URL, why})
	}
	c.table("NAME\tSTATUS\tAVAILABILITY\tSINCE\tHEARTBEAT AGE\tSCHEDULED\tREADY\tFILE SYSTEMS\tFREE\tURL\tWHY", rows)
	return nil
}

// setDiskServerStatus is diskservers drain|return|disable NAME (disk_server_set_status):
// draining finishes what is placed on the server and takes no new write; return puts it
// back in production, where it takes new work at once.
func setDiskServerStatus(ctx context.Context, c *cli, db *pg.DB, name string, status model.DiskServerStatus) error {
	var rows []model.DiskServerSetStatusRow
	if err := db.TxIdempotent(ctx, "set disk server status", func(q pg.Querier) (err error) {
		rows, err = model.DiskServerSetStatus(ctx, q, name, status, operator())
		return err
	}); err != nil {
		return err
	}
	if c.jsonOut {
		return c.printJSON(rows)
	}
	for _, r := range rows {
		if r.Previous == r.Status {
			fmt.Fprintf(c.stdout, "disk server %s is %s already\n", r.Name, r.Status)
			continue
		}
		fmt.Fprintf(c.stdout, "disk server %s: %s (was %s)\n", r.Name, r.Status, r.Previous)
	}
	return nil
}
