package client

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// progressBar draws "label  12.0 MiB / 100.0 MiB  12%  40.1 MiB/s" on one terminal line,
// redrawn a few times a second rather than on every read.
type progressBar struct {
	w     io.Writer
	label string
	start time.Time

	mu          sync.Mutex
	done, total int64

	stop chan struct{}
	wg   sync.WaitGroup
}

func startProgress(w io.Writer, label string, total int64) *progressBar {
	p := &progressBar{w: w, label: label, start: time.Now(), total: total, stop: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.draw()
			}
		}
	}()
	return p
}

// update is the progress callback of Upload and Download.
func (p *progressBar) update(done, total int64) {
	p.mu.Lock()
	p.done, p.total = done, total
	p.mu.Unlock()
}

func (p *progressBar) draw() {
	p.mu.Lock()
	done, total := p.done, p.total
	p.mu.Unlock()
	rate := float64(done) / max(time.Since(p.start).Seconds(), 1e-3)
	line := fmt.Sprintf("%s  %s", p.label, humanBytes(done))
	if total > 0 {
		line += fmt.Sprintf(" / %s  %3d%%", humanBytes(total), done*100/total)
	}
	line += fmt.Sprintf("  %s/s", humanBytes(int64(rate)))
	fmt.Fprintf(p.w, "\r%s\x1b[K", line) // \x1b[K clears what a longer earlier line left
}

// finish draws the final state and ends the line.
func (p *progressBar) finish() {
	close(p.stop)
	p.wg.Wait()
	p.draw()
	fmt.Fprintln(p.w)
}
