"""`llmspec` command line: look at a spec without measuring anything.

    llmspec check SPEC...   validate specs (exit 2 with one line per problem)
    llmspec models SPEC     which model files are present, to download, to derive
    llmspec loadtest NAME   the stress-test plan against any server: results/NAME.json
    llmspec compare A B     what changed between loadtest files, results trees or git revisions
    llmspec schema          the spec's JSON Schema, for editor completion (specs/llmspec.schema.json)

Measuring cells is doit's job (`doit`, `doit report`); this command never starts a server.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from llmspec import compare, loadtest
from llmspec.errors import UserError
from llmspec.plan.planner import Plan
from llmspec.spec import Spec, load_spec
from llmspec.text import format_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmspec", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate specs without running anything")
    check.add_argument("specs", nargs="+", type=Path)
    models = sub.add_parser("models", help="model files of a spec: present, to download, to derive")
    models.add_argument("spec", type=Path)
    plan = sub.add_parser("plan", help="the matrix before running it: up to date / to run / to skip, and why")
    plan.add_argument("spec", type=Path)
    loadtest.add_parser(sub)
    compare.add_parser(sub)
    schema = sub.add_parser("schema", help="the spec's JSON Schema, for editor completion and typo marks")
    schema.add_argument("--output", type=Path, metavar="FILE", help="write it to FILE instead of printing it")
    args = parser.parse_args(argv)
    try:
        return {"check": cmd_check, "models": cmd_models, "plan": cmd_plan, "loadtest": loadtest.command,
                "compare": compare.command, "schema": cmd_schema}[args.command](args)
    except UserError as exc:
        print(f"llmspec: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("llmspec: interrupted", file=sys.stderr)
        return 130


def cmd_check(args) -> int:
    failed = 0
    for path in args.specs:
        try:
            spec = load_spec(path)
        except UserError as exc:
            print(f"llmspec: {exc}", file=sys.stderr)
            failed += 1
            continue
        cells = Plan(spec).cells
        print(f"{path}: ok ({len(spec.models)} models, {len(cells)} cells)")
    return 2 if failed else 0


def cmd_plan(args) -> int:
    from llmspec.plan import view as planview

    print(planview.render(Plan(load_spec(args.spec))))
    return 0


def cmd_schema(args) -> int:
    text = json.dumps(spec_json_schema(), indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{args.output}: cannot write the schema ({exc.strerror or exc})") from None
    return 0


def spec_json_schema() -> dict:
    """pydantic's JSON Schema of `Spec` (with its field descriptions), as TOML editors read it.

    taplo (Even Better TOML) finds it through a spec's first line `#:schema ./llmspec.schema.json`.
    It validates as JSON Schema draft 7 whatever a schema declares, so the schema declares no
    `$schema` and no `$id` (a relative file needs none): every keyword pydantic writes here means
    the same in draft 7 and 2020-12, and its `#/$defs/...` references are plain JSON pointers.
    `name` is not required: the loader takes it from the file name when the spec gives none.
    """
    schema = Spec.model_json_schema()
    schema["properties"]["name"]["description"] = "default: the spec's file name without .toml"
    required = [key for key in schema.pop("required", []) if key != "name"]
    return {"title": "llmspec spec",
            "description": "A spec for llmspec (specs/<name>.toml): models, quants, profiles and thresholds.",
            **{k: v for k, v in schema.items() if k not in ("title", "description")},
            **({"required": required} if required else {})}


def cmd_models(args) -> int:
    plan = Plan(load_spec(args.spec))
    rows = [("model", "quant", "source", "state", "size", "file")]
    for model in plan.spec.models:
        for quant in model.quants:
            mf = plan.model_file(model.name, quant)
            rows.append((model.name, quant, f"{mf.kind}: {mf.origin}", *_state(mf), _shown(mf.path)))
    planned = {plan.model_file(m.name, q).path for m in plan.spec.models for q in [*m.quants, *m.derive.values()]}
    model_dir = plan.spec.resolve(plan.spec.model_dir)
    for path in sorted(model_dir.rglob("*.gguf")):
        if path not in planned:
            rows.append(("-", "-", "-", "not in this spec", f"{path.stat().st_size / 1e6:.0f} MB", _shown(path)))
    print(format_table(rows))
    return 0


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _state(mf) -> tuple[str, str]:
    if mf.path.exists():
        return "available", f"{mf.path.stat().st_size / 1e6:.0f} MB"
    if mf.kind == "derive":
        return f"to derive from {mf.origin}", "?"
    if mf.kind == "hf":
        from llmspec.models import hub

        try:
            return "to download", f"{hub.remote_file_info(mf.repo, mf.file, mf.revision).size / 1e6:.0f} MB"
        except UserError as exc:
            return "to download", f"unknown ({exc})"
    return ("from package" if mf.kind == "package" else "to link"), "?"


if __name__ == "__main__":
    sys.exit(main())
