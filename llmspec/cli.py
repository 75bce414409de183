"""`llmspec` command line: look at a spec without measuring anything.

    llmspec init [NAME]     a first spec from the GGUF files on this machine, sized to it
    llmspec suggest         which catalogue models and quants to download for this machine and use
    llmspec catalogue       the catalogue of well-known GGUF models; `refresh` rebuilds it from the hub
    llmspec check SPEC...   validate specs (exit 2 with one line per problem)
    llmspec models SPEC     which model files are present, to download, to derive, and which are not in it
    llmspec loadtest NAME   the stress-test plan against any server: results/NAME.json
    llmspec compare A B     what changed between loadtest files, results trees or git revisions
    llmspec schema          the spec's JSON Schema, for editor completion (specs/llmspec.schema.json);
                            --results: the result file's and the loadtest output's (the published contract)
    llmspec watch [SPEC]    a live dashboard of the running matrix on http://127.0.0.1:8765/
    llmspec publish SPEC --to hf://datasets/ORG/NAME   this host's results, anonymised, to a shared dataset
    llmspec pull hf://datasets/ORG/NAME                other hosts' results into build/results/, read-only
    llmspec fleet SPEC      with several hosts' results: which host should serve which model

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
from llmspec.spec.inputs import check_inputs
from llmspec.text import format_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmspec", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="write specs/NAME.toml from the GGUF files on this machine, sized to it")
    init.add_argument("name", nargs="?", default="mine", help="the spec's name (default: mine)")
    init.add_argument("--scan", type=Path, action="append", default=[], metavar="DIR",
                      help="also look in DIR (repeatable); the usual tools' folders are always looked in")
    init.add_argument("--use", metavar="USES", help="what you will use the models for, comma-separated: "
                                                    "chat, long-context, batch, accuracy, serving (default: chat)")
    init.add_argument("--memory-gb", type=float, metavar="GB",
                      help="memory a model may take (default: the RAM available); written as limits.max_memory_gb")
    suggest = sub.add_parser("suggest", help="the catalogue's models and quants worth downloading for this machine")
    suggest.add_argument("--use", metavar="USES", help="what for, comma-separated: chat, agent, long-context, "
                                                       "batch, serving, ... (default: chat)")
    suggest.add_argument("--memory-gb", type=float, metavar="GB", help="memory a model may take (default: the "
                                                                       "RAM available)")
    suggest.add_argument("--disk-gb", type=float, metavar="GB", help="disk the download may take (default: free "
                                                                     "disk at build/models)")
    suggest.add_argument("--write", metavar="NAME", help="write specs/NAME.toml with the shortlist")
    catalogue = sub.add_parser("catalogue", help="the catalogue of well-known GGUF models")
    catalogue.add_argument("action", nargs="?", choices=["list", "refresh"], default="list",
                           help="list (default) or refresh: rebuild the snapshot from the hub (headers by range "
                                "requests, no model downloads)")
    catalogue.add_argument("--output", type=Path, metavar="FILE", help="refresh: write here instead of the "
                                                                       "bundled snapshot")
    catalogue.add_argument("--endpoint", metavar="URL", help="refresh: the hub (default: HF_ENDPOINT or the hub)")
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
    schema.add_argument("--results", action="store_true",
                        help="the result file's and loadtest output's JSON Schemas instead (the published contract)")
    watch = sub.add_parser("watch", help="a live dashboard of the running matrix, in a browser (127.0.0.1 by default)")
    watch.add_argument("spec", nargs="?", help="the spec whose report to offer first (a name or a path); "
                       "default: whatever runs in this project (the current folder)")
    watch.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free one)")
    watch.add_argument("--bind", default="127.0.0.1", metavar="ADDR",
                       help="address to serve on (default 127.0.0.1); any other serves read-only under a token "
                            "printed once, e.g. --bind 0.0.0.0 for other machines")
    publish = sub.add_parser("publish", help="this host's results of SPEC, anonymised, to a Hugging Face dataset")
    publish.add_argument("spec", help="the spec (a name or a path)")
    publish.add_argument("--to", required=True, metavar="hf://datasets/ORG/NAME", help="the dataset")
    publish.add_argument("--dry-run", action="store_true", help="list what would be sent, and send nothing")
    publish.add_argument("--keep-hostname", action="store_true",
                         help="publish under this host's folder name instead of an anonymous id (paths and "
                              "process names are dropped all the same)")
    fleet = sub.add_parser("fleet", help="with results of several hosts: which host should serve which model")
    fleet.add_argument("spec", help="the spec (a name or a path)")
    fleet.add_argument("--host", help="the host set against the others (a folder under build/results; "
                                      "default this machine)")
    fleet.add_argument("--with", dest="datasets", action="append", default=[], metavar="hf://datasets/ORG/NAME",
                       help="also the hosts of this dataset, read into build/cache/ (not pulled into build/results)")
    pull = sub.add_parser("pull", help="other hosts' results from a Hugging Face dataset into build/results/")
    pull.add_argument("source", metavar="hf://datasets/ORG/NAME")
    pull.add_argument("--spec", help="only this spec's results (default: all)")
    args = parser.parse_args(argv)
    try:
        return {"init": cmd_init, "suggest": cmd_suggest, "catalogue": cmd_catalogue, "check": cmd_check,
                "models": cmd_models, "plan": cmd_plan,
                "loadtest": loadtest.command, "compare": compare.command, "schema": cmd_schema,
                "watch": cmd_watch, "publish": cmd_publish, "pull": cmd_pull,
                "fleet": cmd_fleet}[args.command](args)
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
            check_inputs(spec)
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


def cmd_watch(args) -> int:
    """Serve the dashboard until Ctrl+C; it reads build/run/progress.json and build/reports/ only."""
    from llmspec.plan.job import Workspace
    from llmspec.watch.server import watch

    root, name = Path.cwd(), None
    if args.spec:
        path = Path(args.spec) if args.spec.endswith(".toml") else root / "specs" / f"{args.spec}.toml"
        spec = load_spec(path)
        root, name = spec.root, spec.name
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: a port is 0 (any free one) to 65535")
    ws = Workspace(root)
    watch(ws.run, ws.reports, name, args.port, bind=args.bind)
    return 0


def _spec(text: str) -> Spec:
    """A spec named on the command line: a path to a .toml, or a name under specs/."""
    return load_spec(Path(text) if text.endswith(".toml") else Path.cwd() / "specs" / f"{text}.toml")


def cmd_publish(args) -> int:
    from llmspec.publish import publish

    return publish(_spec(args.spec), args.to, args.dry_run, args.keep_hostname)


def cmd_fleet(args) -> int:
    from llmspec.plan.job import Workspace
    from llmspec.report import fleet_summary

    spec = _spec(args.spec)
    from llmspec.pull import with_datasets

    ws = Workspace(spec.root)
    found = fleet_summary(spec, with_datasets(ws.results, args.datasets, ws.build), args.host, ws.reports)
    if found is None:
        print(f"Results of fewer than two hosts for spec {spec.name}: a fleet needs more "
              "(llmspec pull hf://datasets/ORG/NAME fetches other hosts' results)")
        return 0
    print(found.text())
    return 0


def cmd_pull(args) -> int:
    from llmspec.plan.job import Workspace
    from llmspec.pull import pull

    return pull(args.source, args.spec, Workspace(Path.cwd()).results)


def cmd_schema(args) -> int:
    if args.results:
        from llmspec.contract import schemas

        text = json.dumps(schemas(), indent=2) + "\n"
    else:
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


def cmd_init(args) -> int:
    import os

    from llmspec import starter

    if args.memory_gb is not None and not args.memory_gb > 0:
        raise UserError(f"--memory-gb: {args.memory_gb:g} is not a memory size; give the GB a model may take, e.g. 16")
    uses = starter.parse_uses(args.use)
    written = starter.init(args.name, Path.cwd(), args.scan, uses, starter.read_host(args.memory_gb), os.environ)
    print("Looked for GGUF files in:")
    print("\n".join(starter.describe_places(written.scan, written.places)))
    for note in written.scan.notes:
        print(f"  note: {note}")
    usable = [e for e in written.entries if e.files]
    left = sum(len(e.left_out) for e in written.entries)
    shown = _shown(written.path)
    if written.demo:
        print(f"No usable model file found: wrote {shown} with the demo's SmolLM2 model and, in a comment, "
              f"how to add a Hugging Face model" + (f" ({left} file(s) left out, see the comments)" if left else ""))
    else:
        quants = sum(len(e.files) for e in usable)
        print(f"Wrote {shown}: {len(usable)} model(s), {quants} file(s), {written.cells} cell(s) for "
              f"{', '.join(uses)}" + (f"; {left} file(s) left out, with the reason in a comment" if left else ""))
    print(f"Next: llmspec plan {shown}, then doit spec={written.spec.name}")
    return 0


def cmd_suggest(args) -> int:
    from llmspec import starter, suggest
    from llmspec.catalogue.load import load_catalogue
    from llmspec.machine import bandwidth
    from llmspec.machine.host import host_id

    for flag, value in (("--memory-gb", args.memory_gb), ("--disk-gb", args.disk_gb)):
        if value is not None and not value > 0:
            raise UserError(f"{flag}: {value:g} is not a size; give GB, e.g. 16")
    uses = starter.parse_uses(args.use)
    host = starter.read_host(args.memory_gb)
    results, me = Path("build/results"), host_id()
    cached = bandwidth.cached(results, me)
    if cached:
        gbps, basis = cached["copy_gbps"], f"{cached['copy_gbps']:.0f} GB/s measured {cached['measured_at'][:10]}"
    else:
        gbps = bandwidth.measure(size_mb=64, repeats=3)["copy_gbps"]
        basis = f"{gbps:.0f} GB/s measured now (64 MB copy; `doit` measures it properly)"
    speed = suggest.calibrate(suggest.host_results(results, me), gbps, basis, host.gpus)
    disk = args.disk_gb if args.disk_gb is not None else suggest.disk_free_gb(Path("build/models"))
    found = suggest.evaluate(load_catalogue().models, host, uses, speed, disk)
    print(f"For {', '.join(uses)} on this host ({host.cpu}, {host.limit_gb:.1f} GB for a model, GPU: "
          f"{host.gpu_note}, {disk:.0f} GB disk):")
    print(format_table(suggest.table(found)))
    for note in suggest.notes(found):
        print(note)
    if args.write:
        path = suggest.write_spec(args.write, Path.cwd(), found, host)
        print(f"Wrote {_shown(path)}; next: llmspec plan {_shown(path)}, then doit spec={args.write}")
    elif found.shortlist:
        print(f"Measure them: llmspec suggest --use {','.join(uses)} --write mine && doit spec=mine")
    return 0


def cmd_catalogue(args) -> int:
    from llmspec.catalogue.load import load_catalogue

    if args.action == "refresh":
        from llmspec.catalogue.refresh import refresh

        fresh = refresh(args.endpoint, None, args.output)
        print(f"Refreshed {len(fresh.models)} catalogue entries" + (f" into {args.output}" if args.output else ""))
        return 0
    rows = [("model", "parameters", "license", "quants", "repo")]
    for e in load_catalogue().models:
        rows.append((e.name, starter_size(e.parameters), e.license, " ".join(e.files), e.repo))
    print(format_table(rows))
    return 0


def starter_size(parameters: int) -> str:
    from llmspec.starter import size_class

    return size_class(parameters)


def cmd_models(args) -> int:
    plan = Plan(load_spec(args.spec))
    rows = [("model", "quant", "source", "state", "size", "file")]
    for model in plan.spec.models:
        for quant in model.quants:
            mf = plan.model_file(model.name, quant)
            rows.append((model.name, quant, f"{mf.kind}: {mf.origin}", *_state(plan.spec, mf), _shown(mf.path)))
    print(format_table(rows))
    _unmentioned(plan)
    return 0


def _unmentioned(plan: Plan) -> None:
    """GGUF files in the model_dir and the usual tools' folders that the spec does not name, each
    with the [[models]] lines that would add it (what `llmspec init` would write)."""
    import os

    from llmspec import starter
    from llmspec.models import files as modelfiles
    from llmspec.models.stores import places, scan

    spec = plan.spec
    mentioned = set()
    for model in spec.models:
        for quant in [*model.quants, *model.derive.values()]:
            mf = plan.model_file(model.name, quant)
            for path in (mf.path, modelfiles.existing_file(spec, mf)):
                if path is not None and path.exists():
                    mentioned.add(os.path.realpath(path))
    scanned = scan(places(os.environ, spec.resolve(spec.model_dir)))
    stray = [f for f in scanned.found if os.path.realpath(f.path) not in mentioned]
    for note in scanned.notes:
        print(f"note: {note}")
    if not stray:
        return
    host = starter.read_host(spec.limits.max_memory_gb)
    found = starter.entries(stray, host, spec.server.ctx_size, {m.name for m in spec.models})
    print(f"\n{sum(len(e.files) + len(e.left_out) for e in found)} GGUF file(s) on this machine not in "
          f"{_shown(spec.path)}; to measure them, add:\n")
    for entry in found:
        print(starter.render_entry(entry, spec.root, spec.server.ctx_size))


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _state(spec, mf) -> tuple[str, str]:
    from llmspec.models import files as modelfiles

    if mf.path.exists():
        return "available", f"{mf.path.stat().st_size / 1e6:.0f} MB"
    if mf.kind == "derive":
        return f"to derive from {mf.origin}", "?"
    if mf.kind == "hf" and (cached := modelfiles.hub_cached(mf)) is not None:
        return "in the Hugging Face cache (linked when a cell runs)", f"{cached.stat().st_size / 1e6:.0f} MB"
    if mf.kind == "hf":
        from llmspec.models import hub

        try:
            return "to download", f"{hub.remote_file_info(mf.repo, mf.file, mf.revision).size / 1e6:.0f} MB"
        except UserError as exc:
            return "to download", f"unknown ({exc})"
    return ("from package" if mf.kind == "package" else "to link"), "?"


if __name__ == "__main__":
    sys.exit(main())
