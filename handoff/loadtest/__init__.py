"""``handoff loadtest``: drives any AI Handoff MCP server with the original guide's scenarios and reports its KPIs."""
