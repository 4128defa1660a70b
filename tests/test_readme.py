"""The README tells the truth: its spec parses and its Python example runs."""

import os
import re
from pathlib import Path

from tunelab.spec import parse_spec

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _block(language: str) -> str:
    return re.search(rf"```{language}\n(.*?)```", README, re.S).group(1)


def test_the_spec_section_is_a_valid_spec():
    import yaml

    spec = parse_spec(yaml.safe_load(_block("yaml")))
    assert spec.name == "digits-mlp" and spec.scheduler.name == "median"


def test_the_python_example_runs(tmp_path, capsys):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(_block("python"), "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    number, rest = capsys.readouterr().out.split(" ", 1)
    assert int(number) >= 0 and "'lr'" in rest
