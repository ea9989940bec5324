"""The run options are declared once (sg3stream/options.py): the command line, the job files and the Python API
are derived from the declaration, so each reaches every option, and a value given through each reaches
RunOptions the same way."""
import dataclasses
import inspect
import typing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sg3stream import api, job
from sg3stream.cli import app
from sg3stream.cli import run as cli_run
from sg3stream.errors import UserError
from sg3stream.farm.jobs import load_job_file
from sg3stream.options import RunOptions, cli_name, option_fields, option_types

CLI_ONLY = {"log_format", "debug"}  # how the command line reports; not run options


def sample_values() -> dict:
    """A value for every option that differs from its default and passes check_options."""
    values = {}
    for f in option_fields():
        hint = option_types()[f.name]
        choices = f.metadata["choices"]
        if choices:
            values[f.name] = next(c for c in choices if c != f.default)
        elif f.name == "edits":
            values[f.name] = ["smile", "age:-2"]
        elif f.name == "device":
            values[f.name] = "cpu"
        elif f.name == "faces":
            values[f.name] = "2"
        elif f.name == "expand":
            values[f.name] = "0,0,64,0"
        elif f.name in ("encoder", "generator"):
            values[f.name] = "demo"
        elif bool in (hint, *typing.get_args(hint)):
            values[f.name] = not f.default
        elif int in (hint, *typing.get_args(hint)):
            values[f.name] = (f.default or 1) + 2
        elif float in (hint, *typing.get_args(hint)):
            values[f.name] = (f.default or 1.0) * 2.5
        elif Path in (hint, *typing.get_args(hint)):
            values[f.name] = Path(f"/tmp/{f.name}")
        else:
            values[f.name] = f"{f.name}-value"
    return values


def cli_args(values: dict) -> list[str]:
    """`sg3stream run` arguments that set `values`, through each field's declared flag."""
    args = []
    for f in option_fields():
        flag, value = f.metadata["flags"][-1] if f.metadata["flags"] else "--" + f.name.replace("_", "-"), values[f.name]
        if isinstance(value, bool):
            if value != f.metadata["negate"]:
                args.append(flag)
        elif isinstance(value, list):
            for item in value:
                args += [flag, item]
        else:
            args += [flag, str(value)]
    return args


def test_every_option_is_reachable_from_the_cli_the_job_files_and_the_api():
    fields = {f.name for f in option_fields()}
    assert {"fine_window", "max_frames_in_flight", "redecode"} <= fields

    cli = set(inspect.signature(cli_run.run).parameters) - {"input", "output"} - CLI_ONLY
    by_cli_name = {cli_name(f): f.name for f in option_fields()}
    assert {by_cli_name[name] for name in cli} == fields and len(cli) == len(fields)

    from sg3stream.farm.jobs import ALIASES, FARM_KEYS

    job_keys = {f.name for f in dataclasses.fields(RunOptions)} - {"input", "output"}
    assert job_keys == fields and ALIASES == {"edit": "edits"} and not FARM_KEYS & fields

    editor = set(inspect.signature(api.Editor).parameters)
    assert editor == fields


def test_a_value_set_through_each_reaches_run_options_the_same_way(tmp_path, monkeypatch):
    values = sample_values()
    expected = RunOptions(input=tmp_path / "in.mp4", output=tmp_path / "out.mp4", **values)

    # the command line: every flag as declared; run_video gets the options (no model, no video here)
    seen = []
    monkeypatch.setattr(job, "run_video", lambda options, reporter, loaded=None: seen.append(options) or {})
    result = CliRunner().invoke(app, ["run", str(tmp_path / "in.mp4"), "-o", str(tmp_path / "out.mp4"),
                                      *cli_args(values), "--log-format", "json"])
    assert result.exit_code == 0, result.output
    assert seen == [expected]

    # a job file: every field by its name (the farm refuses some of them for its own reasons: checked apart)
    import yaml

    from sg3stream.farm.jobs import UNSUPPORTED

    farm_values = {k: v for k, v in values.items() if k not in UNSUPPORTED}
    entry = {"input": "in.mp4", "output": "out.mp4", **{k: str(v) if isinstance(v, Path) else v
                                                        for k, v in farm_values.items()}}
    (tmp_path / "jobs.yaml").write_text(yaml.safe_dump({"jobs": [entry]}))
    [farm_job] = load_job_file(tmp_path / "jobs.yaml")
    assert farm_job.options == dataclasses.replace(expected, **{k: getattr(RunOptions(None, None), k)
                                                                for k in UNSUPPORTED})
    for key in UNSUPPORTED:  # refused by name, not as unknown
        refused_value = str(values[key]) if isinstance(values[key], Path) else values[key]
        (tmp_path / "jobs.yaml").write_text(yaml.safe_dump({"jobs": [{**entry, key: refused_value}]}))
        with pytest.raises(UserError) as refused:
            load_job_file(tmp_path / "jobs.yaml")
        assert "unknown" not in str(refused.value)

    # the Python API: Editor(**options) (its models not loaded here), and a call's own options
    loaded = []
    monkeypatch.setattr(job, "load_models", lambda options: loaded.append(options) or "models")
    editor = api.Editor(**values)
    assert loaded and editor.models == "models"
    assert editor.options == dataclasses.replace(expected, input=None, output=None)
    runs = []
    monkeypatch.setattr(job, "run_video", lambda options, reporter, loaded=None: runs.append((options, loaded)) or {})
    model_values = {k: values[k] for k in ("encoder", "generator", "device", "engine", "compile")}
    api.Editor(**model_values).run(tmp_path / "in.mp4", tmp_path / "out.mp4",
                                   **{k: v for k, v in values.items() if k not in model_values})
    assert runs == [(expected, "models")]


def test_the_choices_declared_are_those_the_modules_implement():
    from engines.base import ENGINE_KINDS
    from sg3stream.render.stages import OUTPUT_MODES
    from sg3stream.video.decode import DECODERS, HWDEC

    choices = {f.name: f.metadata["choices"] for f in option_fields() if f.metadata["choices"]}
    assert choices["engine"] == ENGINE_KINDS and choices["output_mode"] == OUTPUT_MODES
    assert choices["decoder"] == DECODERS and choices["hwdec"] == HWDEC


def test_unknown_or_mistyped_options_are_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.setattr(job, "load_models", lambda options: "models")
    with pytest.raises(TypeError, match="n_iterz"):
        api.Editor(n_iterz=2)
    with pytest.raises(UserError, match="'n_iters' must be int"):
        api.Editor(n_iters="two")
    with pytest.raises(UserError, match="--fine-window must be at least 0"):
        api.Editor(fine_window=-1)
    with pytest.raises(UserError, match="belong to the Editor"):
        api.Editor().run(tmp_path / "in.mp4", tmp_path / "out.mp4", engine="onnx")
    (tmp_path / "jobs.yaml").write_text("jobs:\n  - {input: a.mp4, output: b.mp4, fine_windw: 3}\n")
    with pytest.raises(UserError, match="unknown options: fine_windw"):
        load_job_file(tmp_path / "jobs.yaml")
    result = CliRunner().invoke(app, ["run", "a.mp4", "-o", "b.mp4", "--fine-windw", "3"])
    assert result.exit_code == 2 and "No such option" in result.output
