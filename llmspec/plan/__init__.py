"""Planning: spec -> ordered cells -> what is stale, what to skip, and each cell's job.

Pure apart from reading result files and model-file facts; it never starts a server, and it
does not import the run side (tests/test_layout.py keeps it so).
"""
