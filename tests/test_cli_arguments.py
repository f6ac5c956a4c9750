"""Command-line arguments a command refuses or takes in any case, and how the process
starts and stops: each mistake one clear message with exit status 2, never a traceback."""
import subprocess
import sys
from pathlib import Path

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
    def interrupted(names):
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


# NumPy loaded on first use -----------------------------------------------------------------

RESNET_18 = Path(__file__).resolve().parents[1] / "models" / "resnet-18" / "deploy.prototxt"


def in_new_process(code, cwd):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return result.stdout.splitlines()[-1]


@pytest.mark.parametrize("argv", [["net.prototxt", "--explain"], [str(RESNET_18), "--json"], [str(RESNET_18)]])
def test_check_loads_neither_numpy_nor_dataclasses_nor_the_other_commands(files, argv):
    """dataclasses brings inspect, ast and dis: ~20 ms of every start, so check's path has none."""
    code = (f"import sys; from netspec.cli import main; code = main(['check', *{argv!r}]); "
            "print(code, [m for m in ('numpy._core', 'numpy.core', 'dataclasses') if m in sys.modules], "
            "sorted(m for m in sys.modules if m.startswith('netspec.commands.')))")
    assert in_new_process(code, files) == "0 [] ['netspec.commands.caffe_flags', 'netspec.commands.check']"


def test_a_command_that_computes_loads_numpy_when_it_first_uses_it(files):
    code = ("from netspec.cli import main; "
            "print(main(['test', '--model', 'net.prototxt', '--weights', 'net.caffemodel', '--iterations', '1']))")
    assert in_new_process(code, files) == "0"


def test_the_deferred_numpy_is_numpy_once_loaded_by_any_thread(files):
    code = """if True:
        import sys, threading, types
        from netspec import cli
        cli.defer_numpy()
        import numpy
        from netspec import backend
        from netspec.ops import gemm
        start, sums = threading.Barrier(8), []
        def use():
            start.wait()
            sums.append(float(numpy.ones(3).sum()))
        threads = [threading.Thread(target=use) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        import numpy.linalg
        print(sums == [3.0] * 8, backend.get_xp() is numpy is gemm.numpy is sys.modules["numpy"],
              type(numpy) is types.ModuleType, numpy.linalg.norm([3.0, 4.0]))
    """
    assert in_new_process(code, files) == "True True True 5.0"


def test_a_submodule_import_loads_the_deferred_numpy_first(files):
    code = """if True:
        from netspec import cli
        cli.defer_numpy()
        from numpy.lib.stride_tricks import sliding_window_view
        import numpy
        print(sliding_window_view(numpy.arange(4), 2).shape)
    """
    assert in_new_process(code, files) == "(3, 2)"
