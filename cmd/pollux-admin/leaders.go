package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
)

// cmdLeaders shows who leads each singleton role (HTCondor's HAD status, DUCC's
// "reliable: master/backup"): the leader, its epoch, since when, the lease's age and time
// left, and the backups standing by.
func cmdLeaders(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("leaders", true)
	window := fs.Duration("window", 30*time.Second, "List as backups the instances that stood for a lease within this window.")
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	if *window < time.Second {
		return usageError{fmt.Sprintf("--window must be at least 1s, got %s", *window)}
	}
	db, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	var list []model.LeaderLeaseListRow
	if err := db.DoIdempotent(ctx, "list leaders", func(q pg.Querier) (err error) {
		list, err = model.LeaderLeaseList(ctx, q, int32(window.Seconds()))
		return err
	}); err != nil {
		return err
	}
	if c.jsonOut {
		return c.printJSON(list)
	}
	var rows [][]string
	for _, l := range list {
		leaderName, since, age := "-", "-", "-"
		state := "NO LEADER"
		switch {
		case l.HolderID == nil:
		case l.ExpiresInSeconds > 0:
			state = "leading"
			leaderName = fmt.Sprintf("%s %s", l.HolderHost, (*l.HolderID)[:8])
		case l.ExpiresInSeconds == 0 && l.LeaseAgeSeconds != nil:
			// leader_lease_list says exactly 0 for a resigned lease.
			state = "RESIGNED" // a clean stop; a backup takes over on its next round
			leaderName = fmt.Sprintf("%s %s", l.HolderHost, (*l.HolderID)[:8])
		default:
			state = "EXPIRED" // the leader died or was cut off; a backup takes over on its next round
			leaderName = fmt.Sprintf("%s %s", l.HolderHost, (*l.HolderID)[:8])
		}
		if l.HolderPreferred {
			leaderName += " (preferred)"
		}
		if l.AcquiredAt != nil {
			since = l.AcquiredAt.Local().Format(time.DateTime)
		}
		if l.LeaseAgeSeconds != nil {
			age = seconds(*l.LeaseAgeSeconds)
		}
		backups := strings.Join(l.Backups, ", ")
		if backups == "" {
			backups = "none"
		}
		rows = append(rows, []string{l.Name, state, leaderName, fmt.Sprint(l.Epoch), since, age,
			seconds(max(l.ExpiresInSeconds, 0)), backups})
	}
	c.table("LEASE\tSTATE\tLEADER\tEPOCH\tSINCE\tLEASE AGE\tEXPIRES IN\tBACKUPS", rows)
	return nil
}

func seconds(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(100 * time.Millisecond).String()
}
