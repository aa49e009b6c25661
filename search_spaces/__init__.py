"""Search spaces of nasmerc, one module per space, found by the registry through entry points."""
