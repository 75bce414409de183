"""Watching a run from outside it: the progress file the runner writes (`state`) and the
dashboard that serves it to browsers (`server`, `llmspec watch`)."""
