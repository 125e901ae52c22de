package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
)

func init() {
	commands["ns"] = command{
		"the namespace's permissions: homes, owner, group and mode, group membership, administrators",
		"ns mkhome USER [--group G] | ns chown PATH USER[:GROUP] | ns chown PATH :GROUP | ns chmod PATH MODE | ns ls PATH" +
			" | ns group add|rm USER GROUP | ns group list | ns admin add|rm USER | ns admin list [--json]",
		cmdNS}
}

const nsUsage = "ns: use mkhome USER, chown PATH USER[:GROUP], chmod PATH MODE, ls PATH, group add|rm|list, admin add|rm|list"

// cmdNS manages who may do what in the namespace. Every change is made by a function of
// schema/logic/permission.sql, which checks its input and journals it in system_event with
// the operator's name; this command only reads the command line and prints.
func cmdNS(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("ns", true)
	group := fs.String("group", "", "mkhome: the home's group (none when empty).")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return usageError{nsUsage}
	}
	action, rest := rest[0], rest[1:]
	// Refuse a wrong command line before connecting: it is the operator's typo, not the
	// database's.
	var run func(q pg.Querier) error
	var out func() error
	by := "pollux-admin (" + operator() + ")"
	var entries []model.NamespaceListRow
	printEntries := func() error { return c.printEntries(entries) }
	switch {
	case action == "mkhome" && len(rest) == 1:
		var home string
		run = func(q pg.Querier) (err error) {
			home, err = model.NamespaceMkhome(ctx, q, rest[0], *group, by)
			if err == nil {
				entries, err = namespaceEntry(ctx, q, home)
			}
			return err
		}
		out = printEntries
	case action == "chown" && len(rest) == 2:
		owner, grp, _ := strings.Cut(rest[1], ":")
		var ownerArg, groupArg *string
		if owner != "" {
			ownerArg = &owner
		}
		if strings.Contains(rest[1], ":") {
			groupArg = &grp
		}
		if ownerArg == nil && groupArg == nil {
			return usageError{fmt.Sprintf("ns chown %s: give USER, USER:GROUP or :GROUP", rest[0])}
		}
		run = func(q pg.Querier) (err error) {
			return setEntry(ctx, q, &entries, rest[0], ownerArg, groupArg, nil, by)
		}
		out = printEntries
	case action == "chmod" && len(rest) == 2:
		m, err := strconv.ParseUint(rest[1], 8, 32)
		if err != nil || m > 0o7777 {
			return usageError{fmt.Sprintf("ns chmod %s: %q is not octal mode bits from 0 to 7777, e.g. 0750", rest[0], rest[1])}
		}
		mode := int32(m)
		run = func(q pg.Querier) (err error) {
			return setEntry(ctx, q, &entries, rest[0], nil, nil, &mode, by)
		}
		out = printEntries
	case action == "ls" && len(rest) == 1:
		run = func(q pg.Querier) (err error) {
			entries, err = model.NamespaceList(ctx, q, rest[0])
			return err
		}
		out = printEntries
	case action == "group" && len(rest) == 3 && (rest[0] == "add" || rest[0] == "rm"):
		var changed bool
		run = func(q pg.Querier) (err error) {
			changed, err = model.UserGroupSet(ctx, q, rest[1], rest[2], rest[0] == "add", by)
			return err
		}
		out = func() error {
			fmt.Fprintf(c.stdout, "%s %s group %s%s\n", rest[1], map[bool]string{true: "in", false: "not in"}[rest[0] == "add"],
				rest[2], map[bool]string{true: "", false: " (already)"}[changed])
			return nil
		}
	case action == "group" && len(rest) == 1 && rest[0] == "list":
		var list []model.UserGroup
		run = func(q pg.Querier) (err error) {
			list, err = model.UserGroupList(ctx, q)
			return err
		}
		out = func() error {
			if c.jsonOut {
				return c.printJSON(list)
			}
			var rows [][]string
			for _, g := range list {
				rows = append(rows, []string{g.UserName, g.GroupName, g.AddedAt.UTC().Format(time.DateTime)})
			}
			c.table("USER\tGROUP\tSINCE", rows)
			return nil
		}
	case action == "admin" && len(rest) == 2 && (rest[0] == "add" || rest[0] == "rm"):
		var changed bool
		run = func(q pg.Querier) (err error) {
			changed, err = model.AdminUserSet(ctx, q, rest[1], rest[0] == "add", by)
			return err
		}
		out = func() error {
			fmt.Fprintf(c.stdout, "%s %s an administrator%s\n", rest[1], map[bool]string{true: "is", false: "is not"}[rest[0] == "add"],
				map[bool]string{true: "", false: " (already)"}[changed])
			return nil
		}
	case action == "admin" && len(rest) == 1 && rest[0] == "list":
		var list []model.AdminUser
		run = func(q pg.Querier) (err error) {
			list, err = model.AdminUserList(ctx, q)
			return err
		}
		out = func() error {
			if c.jsonOut {
				return c.printJSON(list)
			}
			var rows [][]string
			for _, a := range list {
				rows = append(rows, []string{a.UserName, a.AddedBy, a.AddedAt.UTC().Format(time.DateTime)})
			}
			c.table("USER\tADDED BY\tSINCE", rows)
			return nil
		}
	default:
		return usageError{fmt.Sprintf("ns %s: unknown action or wrong arguments (%s)", strings.Join(append([]string{action}, rest...), " "), nsUsage)}
	}
	db, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Tx(ctx, "ns "+action, run); err != nil {
		return err
	}
	return out()
}

// setEntry changes an entry (namespace_entry_set) and keeps it as it is now in *entries.
func setEntry(ctx context.Context, q pg.Querier, entries *[]model.NamespaceListRow, path string, owner, group *string, mode *int32, by string) error {
	rows, err := model.NamespaceEntrySet(ctx, q, path, owner, group, mode, by)
	*entries = nil // a retried transaction starts again
	for _, r := range rows {
		// The same columns (one anchor in schema/pollux.yaml), hence the conversion.
		*entries = append(*entries, model.NamespaceListRow(r))
	}
	return err
}

// namespaceEntry is the entry at path alone (namespace_list gives a directory's children
// too).
func namespaceEntry(ctx context.Context, q pg.Querier, path string) ([]model.NamespaceListRow, error) {
	rows, err := model.NamespaceList(ctx, q, path)
	if err != nil || len(rows) == 0 {
		return rows, err
	}
	return rows[:1], nil
}

// printEntries prints namespace entries as ls -l does: mode, owner, group, size, time, path.
func (c *cli) printEntries(entries []model.NamespaceListRow) error {
	if c.jsonOut {
		return c.printJSON(entries)
	}
	var rows [][]string
	for _, e := range entries {
		size := "-"
		if e.SizeBytes != nil {
			size = strconv.FormatInt(*e.SizeBytes, 10)
		}
		group := e.GroupName
		if group == "" {
			group = "-"
		}
		rows = append(rows, []string{e.Kind, e.Mode, e.Owner, group, size, e.UpdatedAt.UTC().Format(time.DateTime), e.Path})
	}
	c.table("KIND\tMODE\tOWNER\tGROUP\tSIZE\tUPDATED (UTC)\tPATH", rows)
	return nil
}
