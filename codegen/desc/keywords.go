package desc

// quotedKeywords are PostgreSQL's keywords outside the unreserved category (reserved,
// type or function name, column name): quote_ident() and format_type() quote them, so
// a description that used them would disagree with the catalogue's spelling.
var quotedKeywords = func() map[string]bool {
	m := map[string]bool{}
	for _, group := range [][]string{
		// Reserved.
		{"all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "both",
			"case", "cast", "check", "collate", "column", "constraint", "create",
			"current_catalog", "current_date", "current_role", "current_time",
			"current_timestamp", "current_user", "default", "deferrable", "desc", "distinct",
			"do", "else", "end", "except", "false", "fetch", "for", "foreign", "from", "grant",
			"group", "having", "in", "initially", "intersect", "into", "lateral", "leading",
			"limit", "localtime", "localtimestamp", "not", "null", "offset", "on", "only", "or",
			"order", "placing", "primary", "references", "returning", "select", "session_user",
			"some", "symmetric", "system_user", "table", "then", "to", "trailing", "true",
			"union", "unique", "user", "using", "variadic", "when", "where", "window", "with"},
		// Type or function name.
		{"authorization", "binary", "collation", "concurrently", "cross", "current_schema",
			"freeze", "full", "ilike", "inner", "is", "isnull", "join", "left", "like",
			"natural", "notnull", "outer", "overlaps", "right", "similar", "tablesample",
			"verbose"},
		// Column name.
		{"between", "bigint", "bit", "boolean", "char", "character", "coalesce", "dec",
			"decimal", "exists", "extract", "float", "greatest", "grouping", "inout", "int",
			"integer", "interval", "json", "json_array", "json_arrayagg", "json_exists",
			"json_object", "json_objectagg", "json_query", "json_scalar", "json_serialize",
			"json_table", "json_value", "least", "merge_action", "national", "nchar", "none",
			"normalize", "numeric", "out", "overlay", "position", "precision", "real", "row",
			"setof", "smallint", "substring", "time", "timestamp", "treat", "trim", "values",
			"varchar", "xmlattributes", "xmlconcat", "xmlelement", "xmlexists", "xmlforest",
			"xmlnamespaces", "xmlparse", "xmlpi", "xmlroot", "xmlserialize", "xmltable"},
	} {
		for _, kw := range group {
			m[kw] = true
		}
	}
	return m
}()
