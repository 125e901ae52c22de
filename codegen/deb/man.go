package main

import (
	"fmt"
	"slices"
	"strings"
)

// manSection is where a program's page goes: 8 for the daemons and the operator's tool,
// 1 for the users' commands.
func manSection(name string) string {
	if isDaemon(name) || name == "pollux-admin" {
		return "8"
	}
	return "1"
}

// roff escapes text for groff: backslashes, hyphens (so that flags copy as ASCII), and a
// leading dot or quote that would read as a request.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	s = strings.ReplaceAll(s, "—", `\(em`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// manPage renders h as a man page; others are the pages SEE ALSO names.
func manPage(h help, version string, others []string) string {
	var b strings.Builder
	sec := manSection(h.Name)
	fmt.Fprintf(&b, ".\\\" Generated from %s --help by codegen/deb. DO NOT EDIT.\n", h.Name)
	fmt.Fprintf(&b, ".TH %s %s \"\" \"Pollux %s\" \"Pollux\"\n", strings.ToUpper(roff(h.Name)), sec, roff(version))
	fmt.Fprintf(&b, ".SH NAME\n%s \\- %s\n", roff(h.Name), roff(h.Summary))
	b.WriteString(".SH SYNOPSIS\n.nf\n")
	for _, u := range h.Usage {
		b.WriteString(roff(u) + "\n")
	}
	b.WriteString(".fi\n")
	if len(h.Description) > 0 {
		b.WriteString(".SH DESCRIPTION\n")
		for _, p := range h.Description {
			paragraph(&b, p)
		}
	}
	for _, s := range h.Sections {
		fmt.Fprintf(&b, ".SH %s\n", roff(strings.ToUpper(s.Title)))
		if s.Title == "Flags" {
			for _, f := range h.flags() {
				fmt.Fprintf(&b, ".TP\n.B %s\n%s\n", roff(f.Head), roff(f.Text))
			}
			continue
		}
		b.WriteString(".nf\n")
		for _, l := range s.Lines {
			b.WriteString(roff(strings.TrimPrefix(l, "  ")) + "\n")
		}
		b.WriteString(".fi\n")
	}
	if len(h.Exit) > 0 {
		b.WriteString(".SH EXIT STATUS\n")
		h.Exit[0] = strings.TrimSpace(strings.TrimPrefix(h.Exit[0], "Exit codes:"))
		paragraph(&b, h.Exit)
	}
	var see []string
	for _, o := range others {
		if o != h.Name {
			see = append(see, fmt.Sprintf(".BR %s (%s)", roff(o), manSection(o)))
		}
	}
	slices.Sort(see)
	if len(see) > 0 {
		b.WriteString(".SH SEE ALSO\n")
		for i, s := range see {
			if i < len(see)-1 {
				s += " ,"
			}
			b.WriteString(s + "\n")
		}
	}
	return b.String()
}

// paragraph writes prose as a filled paragraph, and lines indented in --help (an API
// listing, a table) as they stand.
func paragraph(b *strings.Builder, lines []string) {
	b.WriteString(".PP\n")
	pre := false
	for _, l := range lines {
		indented := strings.HasPrefix(l, " ")
		switch {
		case indented && !pre:
			b.WriteString(".nf\n")
			pre = true
		case !indented && pre:
			b.WriteString(".fi\n")
			pre = false
		}
		b.WriteString(roff(l) + "\n")
	}
	if pre {
		b.WriteString(".fi\n")
	}
}
