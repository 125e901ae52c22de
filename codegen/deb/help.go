package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
)

// help is a program's --help, parsed: the one text the man page, the example settings
// file and --help itself are made of, so that none of them is a second copy of the flags'
// documentation (framework/flagenv prints the daemons' and pollux-stress's, cmd/client the
// clients', cmd/pollux-admin its own).
type help struct {
	Name, Summary string
	// Usage are the synopsis lines.
	Usage []string
	// Description are the paragraphs before the first section, and the ones after that
	// stand outside any section, each as its lines.
	Description [][]string
	// Sections are "Title:" blocks in order (Flags, Environment, Commands ...), each with
	// its indented lines.
	Sections []section
	// Exit is the "Exit codes: ..." paragraph, when there is one.
	Exit []string
}

type section struct {
	Title string
	Lines []string
}

// flagEntry is one flag of a Flags section: its first line (names, argument, variable)
// and its text.
type flagEntry struct {
	Head, Text string
}

var (
	sectionTitle = regexp.MustCompile(`^[A-Z][A-Za-z ]*:$`)
	envName      = regexp.MustCompile(`\((POLLUX_[A-Z0-9_]+)\)`)
	defaultValue = regexp.MustCompile(` \(default "(.*)"\)$`)
)

// helpOf runs bin --help and parses what it prints (the clients print it on stderr).
func helpOf(bin string) (help, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "--help")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = []string{"PATH=/usr/bin:/bin"} // no POLLUX_* of the builder's leaks into defaults
	if err := cmd.Run(); err != nil {
		return help{}, fmt.Errorf("%s --help: %w\n%s", bin, err, stderr.String())
	}
	text := stdout.String()
	if strings.TrimSpace(text) == "" {
		text = stderr.String()
	}
	return parseHelp(text)
}

func parseHelp(text string) (help, error) {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	var h help
	name, summary, ok := strings.Cut(lines[0], " — ")
	if !ok {
		return h, fmt.Errorf("--help does not start with \"name — summary\": %q", lines[0])
	}
	h.Name, h.Summary = name, summary
	var para []string
	var cur *section
	flush := func() {
		if len(para) == 0 {
			return
		}
		if strings.HasPrefix(para[0], "Exit codes:") {
			h.Exit = para
		} else {
			h.Description = append(h.Description, para)
		}
		para = nil
	}
	inUsage := false
	for _, l := range lines[1:] {
		switch {
		case strings.HasPrefix(l, "Usage: "):
			flush()
			h.Usage = append(h.Usage, strings.TrimPrefix(l, "Usage: "))
			cur = nil
		case l == "Usage:":
			flush()
			inUsage, cur = true, nil
		case inUsage && strings.HasPrefix(l, " "):
			h.Usage = append(h.Usage, strings.TrimSpace(l))
		case sectionTitle.MatchString(l):
			flush()
			inUsage = false
			h.Sections = append(h.Sections, section{Title: strings.TrimSuffix(l, ":")})
			cur = &h.Sections[len(h.Sections)-1]
		case l == "":
			inUsage = false
			flush()
			if cur != nil && len(cur.Lines) > 0 {
				cur.Lines = append(cur.Lines, "")
			}
		case cur != nil && strings.HasPrefix(l, " "):
			cur.Lines = append(cur.Lines, l)
		default:
			// A line at the margin ends a section: it is prose again.
			inUsage, cur = false, nil
			para = append(para, l)
		}
	}
	flush()
	for i := range h.Sections {
		s := &h.Sections[i]
		for len(s.Lines) > 0 && s.Lines[len(s.Lines)-1] == "" {
			s.Lines = s.Lines[:len(s.Lines)-1]
		}
	}
	if len(h.Usage) == 0 {
		return h, fmt.Errorf("%s --help has no Usage line", h.Name)
	}
	return h, nil
}

// flags are the entries of the Flags section: a line at two spaces starting with "-" and
// the deeper-indented lines below it.
func (h help) flags() []flagEntry {
	var out []flagEntry
	for _, s := range h.Sections {
		if s.Title != "Flags" {
			continue
		}
		for _, l := range s.Lines {
			t := strings.TrimSpace(l)
			switch {
			case strings.HasPrefix(l, "  -") && !strings.HasPrefix(l, "   "):
				out = append(out, flagEntry{Head: t})
			case len(out) > 0 && t != "":
				out[len(out)-1].Text = strings.TrimSpace(out[len(out)-1].Text + " " + t)
			}
		}
	}
	return out
}

// env is the flag's environment variable, from its head ("--x string    (POLLUX_X)").
func (f flagEntry) env() string {
	if m := envName.FindStringSubmatch(f.Head); m != nil {
		return m[1]
	}
	return ""
}

// def is the flag's default as --help shows it, and the text without it.
func (f flagEntry) def() (value, text string, ok bool) {
	if m := defaultValue.FindStringSubmatchIndex(f.Text); m != nil {
		return f.Text[m[2]:m[3]], f.Text[:m[0]], true
	}
	return "", f.Text, false
}
