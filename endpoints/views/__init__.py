"""Dashboard views, one module per area. They are glue: read from the user's QuerySets, write
through one service call, and translate a `ServiceError` once (see `common`)."""
