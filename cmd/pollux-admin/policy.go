package main

import (
	"context"
	"fmt"
	"os/user"
	"strconv"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
)

// cmdPolicy lists the policy table or changes one setting: the numbers the SQL logic
// decides with, changed on a running instance without a restart (the logic reads them at
// each decision).
func cmdPolicy(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("policy", true)
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	action := "list"
	if len(rest) > 0 {
		action, rest = rest[0], rest[1:]
	}
	switch {
	case action == "list" && len(rest) == 0:
	case action == "set" && len(rest) == 2:
	case action == "set":
		return usageError{"policy set takes a name and a value, e.g. policy set transfer_open_seconds 600"}
	default:
		return usageError{fmt.Sprintf("policy: unknown action %q or extra arguments: use list, or set NAME VALUE", action)}
	}
	db, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	if action == "set" {
		value, err := strconv.ParseInt(rest[1], 10, 64)
		if err != nil {
			return usageError{fmt.Sprintf("policy set %s: %q is not a whole number", rest[0], rest[1])}
		}
		by := "pollux-admin"
		if u, err := user.Current(); err == nil {
			by = "pollux-admin (" + u.Username + ")"
		}
		var old int64
		if err := db.Tx(ctx, "set policy", func(q pg.Querier) (err error) {
			old, err = model.PolicySet(ctx, q, rest[0], value, by)
			return err
		}); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s: %d -> %d\n", rest[0], old, value)
		return nil
	}
	var list []model.Policy
	if err := db.DoIdempotent(ctx, "list policy", func(q pg.Querier) (err error) {
		list, err = model.PolicyList(ctx, q)
		return err
	}); err != nil {
		return err
	}
	if c.jsonOut {
		return c.printJSON(list)
	}
	var rows [][]string
	for _, p := range list {
		rows = append(rows, []string{p.Name, fmt.Sprint(p.Value), p.Doc})
	}
	c.table("NAME\tVALUE\tMEANING", rows)
	return nil
}
