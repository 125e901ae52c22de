package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pollux-storage/pollux/framework/daemon"
	"github.com/pollux-storage/pollux/framework/hotpatch"
	"github.com/pollux-storage/pollux/framework/migrate"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/pgcluster"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema"
)

// logicTable is where installed logic versions are recorded (migrations create it).
const logicTable = model.LogicBundleTable

func (c *cli) open(ctx context.Context) (*pg.DB, error) {
	host, _ := os.Hostname()
	// What an operator changes is told apart from what the daemons did in a request's story.
	settings := map[string]string{daemon.SettingDaemon: "pollux-admin", daemon.SettingHost: host}
	return pg.Open(ctx, pg.Config{DSN: c.databaseURL, ApplicationName: "pollux-admin", RetryBudget: 20 * time.Second,
		Settings: settings})
}

func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (c *cli) table(header string, rows [][]string) {
	w := tabwriter.NewWriter(c.stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(w, header)
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	w.Flush()
}

func operator() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

// cmdDB manages the development cluster that `make db` and `make run` use.
func cmdDB(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("db", false)
	dir := fs.String("dir", "var/pg", "Directory of the cluster.")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"say start, stop, status or dsn"}
	}
	switch pos[0] {
	case "start":
		cl, err := pgcluster.Ensure(ctx, *dir, c.stderr)
		if err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, cl.DSN("pollux"))
		return ensureDatabase(ctx, cl, "pollux")
	case "dsn":
		cl, err := pgcluster.Open(*dir)
		if err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, cl.DSN("pollux"))
		return nil
	case "status":
		cl, err := pgcluster.Open(*dir)
		if err != nil {
			return err
		}
		up, err := cl.Running(ctx)
		if err != nil {
			return err
		}
		abs, _ := filepath.Abs(*dir)
		if !up {
			return fmt.Errorf("cluster at %s is not running (start it with `make db`)", abs)
		}
		fmt.Fprintf(c.stdout, "cluster at %s is running: %s\n", abs, cl.DSN("pollux"))
		return nil
	case "stop":
		cl, err := pgcluster.Open(*dir)
		if err != nil {
			return err
		}
		return cl.Stop(ctx)
	}
	return usageError{fmt.Sprintf("unknown db action %q: say start, stop, status or dsn", pos[0])}
}

// ensureDatabase creates the application database on a fresh cluster.
func ensureDatabase(ctx context.Context, cl *pgcluster.Cluster, name string) error {
	db, err := pg.Open(ctx, pg.Config{DSN: cl.DSN("postgres")})
	if err != nil {
		return err
	}
	defer db.Close()
	var exists bool
	if err := db.Pool().QueryRow(ctx, "select exists(select 1 from pg_database where datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("look for database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := db.Pool().Exec(ctx, "create database "+name); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// migrateReport is what `migrate` prints.
type migrateReport struct {
	Before migrate.Versions `json:"before"`
	After  migrate.Versions `json:"after"`
	Head   migrate.Versions `json:"head"`
	Logic  *hotpatch.Result `json:"logic,omitempty"`
}

func cmdMigrate(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("migrate", true)
	logic := fs.String("logic", "embedded", "Logic to install after migrating: embedded (this binary's), a directory of .sql files, or none.")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	action := "up"
	if len(pos) > 0 {
		action = pos[0]
	}
	if !slices.Contains([]string{"up", "status", "down", "force"}, action) {
		return usageError{fmt.Sprintf("unknown migrate action %q: say up, status, down or force", action)}
	}
	db, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	head, err := migrate.Head(schema.Migrations())
	if err != nil {
		return err
	}
	before, err := migrate.Current(ctx, db, schema.Migrations())
	if err != nil {
		return err
	}
	rep := migrateReport{Before: before, Head: head}
	switch action {
	case "status":
		rep.After = before
	case "up":
		if rep.After, err = migrate.Up(ctx, db, schema.Migrations()); err != nil {
			return err
		}
		if *logic != "none" {
			res, err := applyLogic(ctx, db, *logic, "pollux-admin migrate", false)
			if err != nil {
				return err
			}
			rep.Logic = &res
		}
	case "down":
		if _, err := hotpatch.New(db, logicTable).Uninstall(ctx); err != nil {
			return err
		}
		if err := migrate.Down(ctx, db, schema.Migrations()); err != nil {
			return err
		}
		if rep.After, err = migrate.Current(ctx, db, schema.Migrations()); err != nil {
			return err
		}
	case "force":
		if len(pos) != 2 {
			return usageError{"force needs the version to record, e.g. `migrate force 1`"}
		}
		var v int
		if _, err := fmt.Sscan(pos[1], &v); err != nil {
			return usageError{fmt.Sprintf("force: %q is not a version number", pos[1])}
		}
		if err := migrate.Force(db, schema.Migrations(), v); err != nil {
			return err
		}
		if rep.After, err = migrate.Current(ctx, db, schema.Migrations()); err != nil {
			return err
		}
	default:
		return usageError{fmt.Sprintf("unknown migrate action %q: say up, status, down or force", action)}
	}
	if c.jsonOut {
		return c.printJSON(rep)
	}
	fmt.Fprintf(c.stdout, "database: %s (was %s; this binary's head: %s)\n", rep.After, rep.Before, rep.Head)
	if rep.Logic != nil {
		printLogicResult(c, *rep.Logic)
	}
	if action == "status" && rep.After != rep.Head {
		return fmt.Errorf("database is not at head: run `pollux-admin migrate`")
	}
	return nil
}

func loadBundle(source string) (hotpatch.Bundle, error) {
	if source == "embedded" || source == "" {
		return hotpatch.Load(schema.Logic())
	}
	return hotpatch.Load(os.DirFS(source))
}

func applyLogic(ctx context.Context, db *pg.DB, source, note string, force bool) (hotpatch.Result, error) {
	b, err := loadBundle(source)
	if err != nil {
		return hotpatch.Result{}, err
	}
	res, err := hotpatch.New(db, logicTable, hotpatch.Final(model.LogicFinalFile)).Apply(ctx, b, operator(), note, force)
	if err != nil || res.Unchanged {
		return res, err
	}
	detail, _ := json.Marshal(map[string]any{"version": res.Version, "files": res.Files, "recreated": res.Recreated, "dropped": res.Dropped, "source": source})
	return res, db.Tx(ctx, "record logic event", func(q pg.Querier) error {
		_, err := model.SystemEventRecord(ctx, q, "logic_apply", "pollux-admin", nil,
			fmt.Sprintf("logic version %d applied by %s (%s)", res.Version, operator(), note), detail)
		return err
	})
}

func printLogicResult(c *cli, res hotpatch.Result) {
	if res.Unchanged {
		fmt.Fprintf(c.stdout, "logic: version %d installed already; nothing to do\n", res.Version)
		return
	}
	fmt.Fprintf(c.stdout, "logic: installed version %d (files run: %s", res.Version, strings.Join(res.Files, ", "))
	if len(res.Recreated) > 0 {
		fmt.Fprintf(c.stdout, "; recreated for a signature change: %s", strings.Join(res.Recreated, ", "))
	}
	if len(res.Dropped) > 0 {
		fmt.Fprintf(c.stdout, "; dropped: %s", strings.Join(res.Dropped, ", "))
	}
	fmt.Fprintln(c.stdout, ")")
}

func cmdLogic(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("logic", true)
	dir := fs.String("dir", "embedded", "Directory of logic .sql files (embedded: the files built into this binary).")
	note := fs.String("note", "", "Why this version is applied (recorded with it).")
	force := fs.Bool("force", false, "Apply even if the same bundle is installed (re-runs every file).")
	limit := fs.Int("limit", 20, "How many versions `history` shows.")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || !slices.Contains([]string{"apply", "status", "rollback", "history"}, pos[0]) {
		return usageError{fmt.Sprintf("unknown logic action %q: say apply, status, rollback or history", strings.Join(pos, " "))}
	}
	db, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	p := hotpatch.New(db, logicTable, hotpatch.Final(model.LogicFinalFile))
	switch pos[0] {
	case "apply":
		res, err := applyLogic(ctx, db, *dir, *note, *force)
		if err != nil {
			return err
		}
		if c.jsonOut {
			return c.printJSON(res)
		}
		printLogicResult(c, res)
		return nil
	case "status":
		b, err := loadBundle(*dir)
		if err != nil {
			return err
		}
		st, err := p.Status(ctx, b)
		if err != nil {
			return err
		}
		if c.jsonOut {
			return c.printJSON(st)
		}
		if st.Installed == nil {
			return fmt.Errorf("no logic installed: run `pollux-admin logic apply`")
		}
		in := st.Installed
		fmt.Fprintf(c.stdout, "installed: version %d, checksum %s, applied %s by %s", in.Version, in.Checksum[:12],
			in.AppliedAt.Local().Format(time.DateTime), in.AppliedBy)
		if in.Note != "" {
			fmt.Fprintf(c.stdout, " (%s)", in.Note)
		}
		fmt.Fprintf(c.stdout, "\nfiles (%s): checksum %s\n", *dir, b.Checksum[:12])
		if st.HandEdited {
			fmt.Fprintln(c.stdout, "WARNING: a function was changed by hand since this version was applied")
		}
		for _, l := range []struct {
			what  string
			names []string
		}{{"changed", st.Changed}, {"not installed", st.Added}, {"installed but not in the files", st.Removed}} {
			if len(l.names) > 0 {
				fmt.Fprintf(c.stdout, "%s: %s\n", l.what, strings.Join(l.names, ", "))
			}
		}
		if !st.Matches {
			return fmt.Errorf("the database does not match the files")
		}
		fmt.Fprintln(c.stdout, "the database matches the files")
		return nil
	case "rollback":
		res, err := p.Rollback(ctx, operator())
		if err != nil {
			return err
		}
		detail, _ := json.Marshal(res)
		if err := db.Tx(ctx, "record logic event", func(q pg.Querier) error {
			_, err := model.SystemEventRecord(ctx, q, "logic_rollback", "pollux-admin", nil,
				fmt.Sprintf("logic rolled back by %s: now version %d", operator(), res.Version), detail)
			return err
		}); err != nil {
			return err
		}
		if c.jsonOut {
			return c.printJSON(res)
		}
		printLogicResult(c, res)
		return nil
	case "history":
		list, err := p.History(ctx, *limit)
		if err != nil {
			return err
		}
		if c.jsonOut {
			return c.printJSON(list)
		}
		var rows [][]string
		for _, in := range list {
			rows = append(rows, []string{fmt.Sprint(in.Version), in.AppliedAt.Local().Format(time.DateTime), in.AppliedBy, in.Checksum[:12], in.Note})
		}
		c.table("VERSION\tAPPLIED\tBY\tCHECKSUM\tNOTE", rows)
		return nil
	}
	panic("unreachable: actions are checked above")
}

func cmdDaemons(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("daemons", true)
	window := fs.Duration("window", 10*time.Minute, "Also list stopped instances seen within this window.")
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	db, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	var list []model.DaemonInstanceListRow
	if err := db.DoIdempotent(ctx, "list daemons", func(q pg.Querier) (err error) {
		list, err = model.DaemonInstanceList(ctx, q, int32(window.Seconds()))
		return err
	}); err != nil {
		return err
	}
	if c.jsonOut {
		return c.printJSON(list)
	}
	var rows [][]string
	for _, d := range list {
		state := "up"
		switch {
		case d.StoppedAt != nil:
			state = "stopped"
		case d.HeartbeatAgeSeconds > 30:
			state = "SILENT" // no heartbeat for six intervals: probably dead
		}
		rows = append(rows, []string{d.Role, d.Host, fmt.Sprint(d.Pid), d.ID[:8], state,
			(time.Duration(d.HeartbeatAgeSeconds * float64(time.Second))).Round(100 * time.Millisecond).String(),
			d.StartedAt.Local().Format(time.DateTime), d.Version, string(d.Pools), d.AdminURL})
	}
	c.table("ROLE\tHOST\tPID\tINSTANCE\tSTATE\tHEARTBEAT AGE\tSTARTED\tVERSION\tPOOLS\tADMIN", rows)
	return nil
}

func cmdEvents(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("events", true)
	limit := fs.Int("limit", 50, "How many events to show, newest first.")
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	db, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	var list []model.SystemEvent
	if err := db.DoIdempotent(ctx, "list events", func(q pg.Querier) (err error) {
		list, err = model.SystemEventList(ctx, q, int32(*limit))
		return err
	}); err != nil {
		return err
	}
	if c.jsonOut {
		return c.printJSON(list)
	}
	var rows [][]string
	for _, e := range list {
		rows = append(rows, []string{e.At.Local().Format(time.DateTime + ".000"), e.Kind, e.Daemon, e.Message})
	}
	c.table("AT\tKIND\tDAEMON\tMESSAGE", rows)
	return nil
}
