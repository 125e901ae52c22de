// Package jobs names the River jobs Pollux's daemons hand each other: the job manager
// queues a Schedule job per subrequest, the scheduler queues a Transfer job on the chosen
// disk server's own queue, and that server's diskserverd works it by starting a mover.
package jobs

import "github.com/riverqueue/river"

// ScheduleQueue is the queue every schedulerd works.
const ScheduleQueue = "schedule"

// Schedule asks a scheduler to place one subrequest (subrequest_schedule).
type Schedule struct {
	SubrequestID int64 `json:"subrequest_id"`
}

// Kind names the job kind in River's table.
func (Schedule) Kind() string { return "pollux_schedule" }

// InsertOpts puts every Schedule job on the schedulers' queue.
func (Schedule) InsertOpts() river.InsertOpts { return river.InsertOpts{Queue: ScheduleQueue} }

// Transfer asks a disk server to start a mover for one subrequest; it is queued on that
// server's own queue (disk_server_queue in the logic).
type Transfer struct {
	SubrequestID int64 `json:"subrequest_id"`
}

// Kind names the job kind in River's table.
func (Transfer) Kind() string { return "pollux_transfer" }
