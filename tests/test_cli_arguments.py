"""Command-line arguments a command refuses or takes in any case, and how the process
starts and stops: each mistake one clear message with exit status 2, never a traceback."""
import subprocess
import sys

import pytest

from cli_files import files, refused, run  # noqa: F401  (files: a fixture)
from netspec import cli
from netspec.cli import main


# seeds and levels -------------------------------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    (["train", "--solver", "solver.prototxt", "--seed", "-1"], "argument --seed: found -1; expected an integer of 0 or more"),
    (["test", "--model", "net.prototxt", "--weights", "net.caffemodel", "--seed", "-1"],
     "argument --seed: found -1; expected an integer of 0 or more"),
    (["test", "--model", "net.prototxt", "--weights", "net.caffemodel", "--level", "99999999999999"],
     "argument --level: found 99999999999999; expected an integer from -2147483648 to 2147483647"),
    (["train", "--solver", "solver.prototxt", "--level", "99999999999999"], "argument --level: found 99999999999999"),
])
def test_seed_and_level_out_of_range_are_refused(files, capsys, argv, words):
    assert words in refused(capsys, *argv)


# test --phase in any case; --backend explained -------------------------------------------

def test_test_takes_a_lowercase_phase_and_explains_backend(files, capsys):
    code, out, _ = run(capsys, "test", "--model", "net.prototxt", "--weights", "net.caffemodel",
                       "--phase", "test", "--iterations", "1")
    assert code == 0 and "Batch 0, ip = " in out
    with pytest.raises(SystemExit):
        main(["test", "--help"])
    assert "array backend (default numpy)" in " ".join(capsys.readouterr().out.split())


# --iterations 0 with --example ----------------------------------------------------------

def test_example_refuses_zero_iterations(capsys):
    code, out, err = run(capsys, "train", "--example", "--iterations", "0")
    assert code == 2 and "--iterations must be at least 1, found 0" in err
    assert "Converted" not in out              # refused before any work


# Ctrl-C while loading ----------------------------------------------------------------------

def test_ctrl_c_while_loading_is_one_line(capsys, monkeypatch):
    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert main(["check", "x.prototxt"]) == 130
    out, err = capsys.readouterr()
    assert err == "netspec: interrupted\n" and out == ""


def test_entry_point_module_loads_no_heavy_libraries():
    """What the console script imports before main() runs stays small, so that main's own
    handler covers the long imports (NumPy, protobuf)."""
    code = "import sys, netspec.cli; print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'google'}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
