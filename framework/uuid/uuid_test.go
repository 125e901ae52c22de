package uuid_test

import (
	"testing"

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
