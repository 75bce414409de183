"""Running: the one llama-server (session, server), the streaming client, the load engine, and
the runner that turns a planned `CellJob` into a `Result`. Imported only when a cell runs."""
