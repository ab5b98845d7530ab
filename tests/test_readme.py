"""README and code cannot drift: every `tgdmat` command in the README's code blocks parses with
the real CLI parser (options that exist, values of the right type), and the quickstart's
generate command runs as written."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_commands() -> list[str]:
    """Every `tgdmat ...` command line inside a ```bash block (comments and shell glue removed)."""
    text = README.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", line):
                if part.startswith("tgdmat "):
                    commands.append(part)
    return commands


def test_the_readme_has_commands():
    assert len(readme_commands()) >= 15


@pytest.mark.parametrize("command", readme_commands())
def test_every_readme_command_parses(command):
    from tgdmat.cli import build_parser

    command = re.split(r"\s[12]?>", command)[0]  # drop output redirections
    argv = shlex.split(command.replace('"$(cat srtio3.txt)"', '"text"'))[1:]
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on an unknown option or a bad value
        pytest.fail(f"README command does not parse ({exc.code}): {command}")


def test_quickstart_generate_runs_as_written(tmp_path):
    first = README.read_text().split("```bash\n", 1)[1].split("\n", 1)[0]
    generate = next(part for part in first.split(" && ") if part.startswith("tgdmat generate"))
    argv = shlex.split(generate)
    result = subprocess.run([sys.executable, "-m", "tgdmat.cli", *argv[1:], "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-800:]
    out = tmp_path / argv[argv.index("--out") + 1]
    assert len(list(out.glob("*.cif"))) == int(argv[argv.index("-n") + 1]) and (out / "summary.csv").exists()
    assert "crystals satisfy every field of the prompt" in result.stdout
