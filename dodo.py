"""doit entry point: `doit` measures stale cells and reports; `doit report` only reports.

The project root is doit's working directory (this file's folder, or `doit -d DIR`); specs are
read from its specs/ folder. Narrow to some specs with `doit spec=demo` (or LLMSPEC_SPEC=demo).
The tasks themselves are built in llmspec/tasks.py.
"""

from pathlib import Path

from llmspec.tasks import generate, selected_specs

globals().update(generate(Path.cwd(), selected_specs()))
