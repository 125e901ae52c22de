// Package logging builds the one zap logger a process uses: JSON for machines (production),
// a readable console encoding for people (development), chosen by flag or by whether
// stderr is a terminal. Callers hand it down; there is no global logger.
package logging

import (
	"fmt"
	"io"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Standard field names every Pollux log line may carry.
const (
	KeyDaemon    = "daemon"
	KeyInstance  = "instance"
	KeyHost      = "host"
	KeyPool      = "pool"
	KeyRequestID = "request_id"
)

// Config chooses the encoding and level.
type Config struct {
	// Format is "json", "console" or "auto" (console on a terminal, JSON otherwise).
	Format string
	// Level is debug, info, warn or error.
	Level string
}

// New returns a logger writing to w (a daemon's stderr).
func New(cfg Config, w io.Writer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(cfg.Level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: must be debug, info, warn or error", cfg.Level)
	}
	format := cfg.Format
	if format == "" || format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && isTerminal(f) {
			format = "console"
		}
	}
	var enc zapcore.Encoder
	switch format {
	case "json":
		ec := zap.NewProductionEncoderConfig()
		ec.TimeKey = "time"
		ec.EncodeTime = zapcore.RFC3339NanoTimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	case "console":
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeLevel = zapcore.CapitalColorLevelEncoder
		ec.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		enc = zapcore.NewConsoleEncoder(ec)
	default:
		return nil, fmt.Errorf("log format %q: must be json, console or auto", cfg.Format)
	}
	// Every event matters to an operator reading a failure: no sampling, and no stack
	// traces (errors carry their context in their text).
	sink := zapcore.Lock(zapcore.AddSync(w))
	return zap.New(zapcore.NewCore(enc, sink, level), zap.AddCaller(), zap.ErrorOutput(sink)), nil
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
