package main

import (
	"context"
	"fmt"
	"time"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
)

// Registered here, not in the table of main.go, so that the table's columns stay as they
// are (gofmt aligns them on the longest name).
func init() {
	commands["diskservers"] = command{
		"list the disk servers: status, availability (AVAILABLE, SILENT, STOPPED) and since when, transfers, space",
		"diskservers [--json]", cmdDiskServers}
}

// cmdDiskServers lists the disk servers as the logic sees them: the operator's status,
// whether each can take transfers now (AVAILABLE, SILENT: its heartbeat stopped, STOPPED:
// its daemon was stopped) and since when, and what is placed on it and moving there.
func cmdDiskServers(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("diskservers", true)
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	db, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
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
