package requesthandler

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
)

// checkScopes refuses (403) a request a JWT's scopes do not reach, before anything is
// stored: read for GET, read or stage for PREPARE_TO_GET, modify for PUTDONE and RM, and for PUT create
// when the file is new, modify when it overwrites. A static token passes: it is limited by
// the namespace permissions alone, which the logic checks for every credential.
//
// Whether a PUT overwrites is read here, before the request is stored, so that the usual
// refusal is at once; a file created between this read and the stager's decision is caught
// by the decision itself: the PUT's paths the token may create but not modify are returned
// (createOnly), stored with the request, and the put decision refuses to overwrite them.
func (s *server) checkScopes(ctx context.Context, g grant, id string, typ model.RequestType, paths []string) (createOnly []string, _ *httpError) {
	if !g.scoped {
		return nil, nil
	}
	for _, p := range paths {
		var op string
		switch typ {
		case model.RequestTypeGet:
			op = opRead
		case model.RequestTypePrepareToGet:
			if g.allows(opStage, p) {
				continue
			}
			op = opRead
		case model.RequestTypePutdone, model.RequestTypeRm:
			op = opModify
		case model.RequestTypePut:
			if g.allows(opModify, p) {
				continue
			}
			createOnly = append(createOnly, p)
			exists, herr := s.fileExists(ctx, p, g.user)
			if herr != nil {
				return nil, herr
			}
			op = opCreate
			if exists {
				op = opModify
			}
		default:
			return nil, invalid("type %s has no scope rule", typ)
		}
		if g.allows(op, p) {
			continue
		}
		if op == opModify && typ == model.RequestTypePut {
			// A retry of this very put finds the file its first submission made: it is
			// the stored request, not an overwrite.
			mine, herr := s.ownRequest(ctx, id, g.user)
			if herr != nil {
				return nil, herr
			}
			if mine {
				continue
			}
			herr = g.refuse(op, p)
			herr.message += fmt.Sprintf(" (%s exists: writing it again overwrites it)", p)
			return nil, herr
		}
		return nil, g.refuse(op, p)
	}
	return createOnly, nil
}

// fileExists says whether p names a file, as user may see it. A file user may not read
// counts as one: a create-only token must not overwrite what it cannot even see (the
// namespace's own check refuses the write anyway unless user may make it).
func (s *server) fileExists(ctx context.Context, p, user string) (bool, *httpError) {
	ctx, cancel, herr := s.dbContext(ctx)
	if herr != nil {
		return false, herr
	}
	defer cancel()
	var rows []model.FileQueryRow
	err := s.db.DoIdempotent(ctx, "query file", func(q pg.Querier) (err error) {
		rows, err = model.FileQuery(ctx, q, p, user)
		return err
	})
	switch {
	case pg.SQLState(err) == model.SQLStateNotFound:
		return false, nil
	case pg.SQLState(err) == model.SQLStatePermissionDenied:
		return true, nil
	case err != nil:
		return false, dbError(err)
	}
	return len(rows) > 0, nil
}

// ownRequest says whether request id is stored already, for user.
func (s *server) ownRequest(ctx context.Context, id, user string) (bool, *httpError) {
	ctx, cancel, herr := s.dbContext(ctx)
	if herr != nil {
		return false, herr
	}
	defer cancel()
	var view []byte
	err := s.db.DoIdempotent(ctx, "read request", func(q pg.Querier) (err error) {
		view, err = model.RequestView(ctx, q, id)
		return err
	})
	if err != nil {
		return false, requestError(err, id)
	}
	if view == nil {
		return false, nil
	}
	var v struct {
		Owner string `json:"owner"`
	}
	if err := json.Unmarshal(view, &v); err != nil {
		return false, requestError(fmt.Errorf("decode request_view of %s: %w", id, err), id)
	}
	return v.Owner == user, nil
}
