package uuid_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/uuid"
)

func TestNewIsARandomVersion4UUID(t *testing.T) {
	t.Parallel()
	a, b := uuid.New(), uuid.New()
	re := `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`
	require.Regexp(t, re, a)
	require.Regexp(t, re, b)
	require.NotEqual(t, a, b)
}

// Version 7 ids carry their time: made a millisecond apart they sort in the order they were
// made, and their first 48 bits are that millisecond.
func TestNewV7IsTimeOrdered(t *testing.T) {
	t.Parallel()
	re := `^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`
	millisecond := func(id string) int64 {
		ms, err := strconv.ParseInt(strings.ReplaceAll(id[:13], "-", ""), 16, 64)
		require.NoError(t, err)
		return ms
	}
	before := time.Now().UnixMilli()
	a := uuid.NewV7()
	require.Regexp(t, re, a)
	require.GreaterOrEqual(t, millisecond(a), before)
	require.LessOrEqual(t, millisecond(a), time.Now().UnixMilli())
	for time.Now().UnixMilli() <= millisecond(a) {
		// a later millisecond: ids of one millisecond are ordered by their random bits only
	}
	b := uuid.NewV7()
	require.Regexp(t, re, b)
	require.Less(t, a, b, "made later, sorts later")
}
