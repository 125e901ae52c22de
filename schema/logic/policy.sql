-- The operator's policy: the numbers the logic decides with (liveness, retries, timeouts,
-- retention), one row each in the policy table, so that changing one is an UPDATE on a
-- running instance (`pollux-admin policy set`), never a rebuild, a flag or a patch.

-- policy_value is one setting. Raises: not_found (PX001) for a name the table lacks, so a
-- typo in the logic fails loudly rather than deciding with a default. Reads only.
CREATE OR REPLACE FUNCTION policy_value(p_name text)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v bigint;
BEGIN
    SELECT value INTO v FROM policy WHERE name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no policy setting "%" (see the policy table)', p_name USING ERRCODE = 'PX001';
    END IF;
    RETURN v;
END;
$$;

-- policy_values is several settings in one read, in the order of p_names: for a function
-- that needs a few on every call (transfer_claim), where a policy_value call is a query
-- and a function call of its own. Raises: not_found (PX001), as policy_value does, for a
-- name the table lacks. Reads only.
CREATE OR REPLACE FUNCTION policy_values(p_names text[])
RETURNS bigint[]
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v bigint[];
    v_missing text;
BEGIN
    SELECT array_agg(p.value ORDER BY n.i), (array_agg(n.name ORDER BY n.i) FILTER (WHERE p.name IS NULL))[1]
    INTO v, v_missing
    FROM unnest(p_names) WITH ORDINALITY AS n(name, i) LEFT JOIN policy p ON p.name = n.name;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'no policy setting "%" (see the policy table)', v_missing USING ERRCODE = 'PX001';
    END IF;
    RETURN v;
END;
$$;

-- policy_set changes one setting and journals the change. Raises: not_found (PX001) for an
-- unknown name, invalid_argument (PX002) for a negative value. Locks: its row.
CREATE OR REPLACE FUNCTION policy_set(p_name text, p_value bigint, p_by text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_old bigint;
BEGIN
    IF p_value IS NULL OR p_value < 0 THEN
        RAISE EXCEPTION 'policy "%" must be a whole number of at least 0, got %', p_name, coalesce(p_value::text, 'nothing')
            USING ERRCODE = 'PX002';
    END IF;
    SELECT value INTO v_old FROM policy WHERE name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no policy setting "%": the settings are %', p_name,
            (SELECT string_agg(name, ', ' ORDER BY name) FROM policy) USING ERRCODE = 'PX001';
    END IF;
    UPDATE policy SET value = p_value WHERE name = p_name;
    PERFORM system_event_record('policy_set', coalesce(p_by, ''), NULL, format('policy %s: %s -> %s', p_name, v_old, p_value),
        jsonb_build_object('name', p_name, 'old', v_old, 'new', p_value));
    -- A longer liveness window may bring disk servers back into placement.
    PERFORM capacity_changed();
    RETURN v_old;
END;
$$;

-- policy_list is every setting, by name. Reads only.
CREATE OR REPLACE FUNCTION policy_list()
RETURNS SETOF policy
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$ BEGIN RETURN QUERY SELECT * FROM policy ORDER BY name; END $$;
