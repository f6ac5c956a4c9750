"""Every user mistake on the command line: one clear message, exit status 2, no traceback,
and no output file, half-written or whole."""
import json
import os
import re
import subprocess
import sys

import pytest

from netspec import caffe_pb2 as pb
from netspec import cli
from netspec.cli import main

NET = """name: "small"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "ip" type: "InnerProduct" bottom: "conv1" top: "ip" inner_product_param { num_output: 5 } }
"""
SOLVER = 'net: "net.prototxt"\nbase_lr: 0.01\nmax_iter: 10\nlr_policy: "fixed"\n'

# Each command with the arguments that make it read a net from {}.
READERS = {
    "check": ["check", "{}"],
    "time": ["time", "{}", "-n", "1"],
    "convert": ["convert", "{}", "{out}/out.json"],
    "upgrade": ["upgrade", "{}", "{out}/out.prototxt"],
}


@pytest.fixture
def files(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(SOLVER)
    (tmp_path / "out").mkdir()
    return tmp_path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def run_reader(capsys, command, path, tmp_path):
    argv = [a.format(str(path), out=tmp_path / "out") for a in READERS[command]]
    code, out, err = run(capsys, *argv)
    assert not os.listdir(tmp_path / "out"), "an output file was written despite the error"
    return code, err


def error_line(err, command):
    assert err.startswith(f"netspec {command}: error: "), err
    return err


# -- files that cannot be read -------------------------------------------------------------

@pytest.mark.parametrize("command", READERS)
def test_missing_file_folder_and_broken_link(files, capsys, command):
    code, err = run_reader(capsys, command, files / "missing.prototxt", files)
    assert code == 2 and "missing.prototxt: cannot read the file: No such file" in error_line(err, command)
    assert "fix: check the path" in err
    code, err = run_reader(capsys, command, files / "out", files)
    assert code == 2 and "cannot read the file: it is a folder, not a file" in err
    (files / "link.prototxt").symlink_to(files / "gone.prototxt")
    code, err = run_reader(capsys, command, files / "link.prototxt", files)
    assert code == 2 and "symbolic link to" in err and "gone.prototxt, which does not exist" in err


@pytest.mark.parametrize("command", READERS)
@pytest.mark.parametrize("name, text", [("empty.prototxt", ""), ("blank.prototxt", "\n  # a comment\n\n"),
                                        ("empty.yaml", "# nothing\n"), ("empty.json", " \n")])
def test_empty_files_are_refused(files, capsys, command, name, text):
    (files / name).write_text(text)
    code, err = run_reader(capsys, command, files / name, files)
    assert code == 2
    assert f"{name}: the file is empty (nothing but spaces or comments); expected a net" in error_line(err, command)


@pytest.mark.parametrize("command", READERS)
def test_binary_garbage_and_truncated_weights(files, capsys, command):
    garbage = bytes(range(256)) * 2
    (files / "garbage.prototxt").write_bytes(garbage)
    code, err = run_reader(capsys, command, files / "garbage.prototxt", files)
    assert code == 2 and "not UTF-8 text" in err and "binary extension" in err
    (files / "garbage.caffemodel").write_bytes(b"\xff" * 40)
    code, err = run_reader(capsys, command, files / "garbage.caffemodel", files)
    assert code == 2 and "not a binary protobuf" in err
    net = pb.NetParameter(name="n", layer=[pb.LayerParameter(name="ip", type="InnerProduct",
                                                              blobs=[pb.BlobProto(data=[0.5] * 100)])])
    data = net.SerializeToString()
    (files / "cut.caffemodel").write_bytes(data[:len(data) // 2])
    code, err = run_reader(capsys, command, files / "cut.caffemodel", files)
    assert code == 2 and "truncated" in err and "copy or download it again" in err


@pytest.mark.parametrize("command", ["check", "time"])
def test_a_solver_or_snapshot_where_a_net_is_expected(files, capsys, command):
    code, err = run_reader(capsys, command, files / "solver.prototxt", files)
    assert code == 2 and "found a solver (SolverParameter); expected a net" in err
    assert "--kind" not in err and "`net:` field" in err      # these commands have no --kind
    (files / "s.solverstate").write_bytes(pb.SolverState(iter=3, learned_net="x").SerializeToString())
    code, err = run_reader(capsys, command, files / "s.solverstate", files)
    assert code == 2 and "found a solver snapshot" in err and "--kind" not in err
    assert "the .caffemodel saved beside it" in err


def test_a_net_where_a_solver_is_expected(files, capsys):
    code, _, err = run(capsys, "train", "--solver", files / "net.prototxt")
    assert code == 2 and "found a net" in err and "expected a solver" in err
    assert "give the solver file" in err


def test_upgrade_names_the_kind_it_cannot_upgrade(files, capsys):
    (files / "s.solverstate").write_bytes(pb.SolverState(iter=3).SerializeToString())
    code, err = run_reader(capsys, "upgrade", files / "s.solverstate", files)
    assert code == 2 and "found a solver snapshot (SolverState" in err and "netspec convert" in err


# -- YAML and JSON ---------------------------------------------------------------------------

@pytest.mark.parametrize("command", READERS)
def test_yaml_python_tags_are_refused_safely(files, capsys, command):
    marker = files / "PWNED"
    (files / "evil.yaml").write_text(f'name: !!python/object/apply:os.system ["touch {marker}"]\n')
    code, err = run_reader(capsys, command, files / "evil.yaml", files)
    assert code == 2 and not marker.exists()
    assert "evil.yaml:1:7: found the YAML tag '!!python/object/apply:os.system'" in err
    assert "fix: remove the tag" in err


@pytest.mark.parametrize("text, words", [
    ('{"name": ["x"]}', "n.json:1:2: name: found a list; expected a string"),
    ('{"layer": [{"name": "c", "type": "Convolution", "convolution_param": {"num_output": "four"}}]}',
     "layer 'c': num_output: found str 'four'; expected an integer"),
    ('{"layer": [{"name": "c", "convolution_param": {"bias_term": "yes"}}]}',
     "bias_term: found str 'yes'; expected true or false"),
    ('{"layer": [{"name": "p", "pooling_param": {"pool": "MAXX"}}]}', "did you mean 'MAX'?"),
    ('{"layer": [{"name": "p", "pooling_parm": {}}]}', "did you mean 'pooling_param'"),
])
def test_json_with_wrong_types(files, capsys, text, words):
    (files / "n.json").write_text(text)
    code, err = run_reader(capsys, "check", files / "n.json", files)
    assert code == 2 and words in err


def test_unknown_layer_type_field_and_enum(files, capsys):
    (files / "t.prototxt").write_text(NET.replace('"Convolution"', '"Convolutoin"'))
    code, err = run_reader(capsys, "time", files / "t.prototxt", files)
    assert code == 2 and "t.prototxt:3: layer 'conv1' (Convolutoin): unknown layer type" in err
    assert "did you mean 'Convolution'" in err
    (files / "f.prototxt").write_text(NET.replace("num_output: 4", "num_ouput: 4"))
    code, err = run_reader(capsys, "check", files / "f.prototxt", files)
    assert code == 2 and "f.prototxt:4:23: layer 'conv1'" in err and "did you mean 'num_output'?" in err
    (files / "e.yaml").write_text("layer:\n- name: p\n  type: Pooling\n  pooling_param: {pool: MAXX}\n")
    code, err = run_reader(capsys, "convert", files / "e.yaml", files)
    assert code == 2 and "e.yaml:4:19: layer 'p': pool: found str 'MAXX'" in err and "expected one of MAX, AVE, STOCHASTIC" in err


# -- arguments -------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["check", "time"])
@pytest.mark.parametrize("value, words", [
    ("data", "found no '='"),
    ("=1,3,8,8", "found no blob name before '='"),
    ("data=", "found no dimensions after 'data='"),
    ("data=1,a,8,8", "found 'a'; expected an integer dimension"),
    ("data=1.5,3,8,8", "found '1.5'; expected an integer dimension"),
    ("data=1,-3,8,8", "found the dimension -3; expected a positive integer"),
    ("data=0,3,8,8", "found the dimension 0; expected a positive integer"),
    ("data=1,,8,8", "found an empty dimension"),
])
def test_bad_input_syntax(files, capsys, command, value, words):
    code, _, err = run(capsys, command, files / "net.prototxt", "--input", value)
    assert code == 2
    assert f"--input '{value}' is not NAME=N,C,H,W: {words}" in error_line(err, command)
    assert "fix: write e.g. --input data=10,3,227,227" in err


@pytest.mark.parametrize("command", ["check", "time"])
def test_input_named_twice_or_not_in_the_net(files, capsys, command):
    net, quick = files / "net.prototxt", ["-n", "1"] if command == "time" else []
    code, _, err = run(capsys, command, net, "--input", "data=1,3,8,8", "--input", "data=2,3,8,8")
    assert code == 2 and "--input 'data' given twice, as 1x3x8x8 and as 2x3x8x8" in err
    code, _, err = run(capsys, command, net, "--input", "data=1,3,8,8", "--input", "data=1x3x8x8", *quick)
    assert code == 0, err                   # the same shape twice is harmless
    code, _, err = run(capsys, command, net, "--input", "dta=1,3,8,8")
    assert code == 2 and "no input blob 'dta'" in err and "data" in err


@pytest.mark.parametrize("command", ["check", "time"])
@pytest.mark.parametrize("option", [["--phase", "VAL"], ["--level", "x"], ["--backend", "tpu"]])
def test_bad_state_options_are_refused_by_the_parser(files, capsys, command, option):
    if command == "check" and option[0] == "--backend":
        option = ["--strict", "--bogus"]
    with pytest.raises(SystemExit) as e:
        main([command, str(files / "net.prototxt"), *option])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"netspec {command}: error:" in err and "Traceback" not in err


def test_phase_is_case_blind_in_check_and_time(files, capsys):
    assert run(capsys, "check", files / "net.prototxt", "--phase", "train")[0] == 0
    assert run(capsys, "time", files / "net.prototxt", "--phase", "test", "-n", "1")[0] == 0


def test_time_refuses_a_negative_seed_and_two_nets(files, capsys):
    with pytest.raises(SystemExit) as e:
        main(["time", str(files / "net.prototxt"), "--seed", "-1"])
    assert e.value.code == 2
    assert "argument --seed: found -1; expected an integer of 0 or more" in capsys.readouterr().err
    code, _, err = run(capsys, "time", files / "net.prototxt", "--model", files / "solver.prototxt")
    assert code == 2 and "two nets given" in err


def test_an_unknown_option_is_named_by_the_subcommand_with_the_nearest(files, capsys):
    with pytest.raises(SystemExit) as e:
        main(["check", str(files / "net.prototxt"), "--strcit"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage: netspec check" in err
    assert "netspec check: error: unrecognized arguments: --strcit; --strcit: did you mean --strict?" in err


# -- outputs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["convert", "upgrade"])
def test_outputs_that_cannot_be_written(files, capsys, command):
    net = files / "net.prototxt"
    code, _, err = run(capsys, command, net, files / "nowhere" / "out.json")
    assert code == 2 and "cannot write: the folder" in err and "does not exist" in err and "mkdir -p" in err
    assert not (files / "nowhere").exists()
    code, _, err = run(capsys, command, net, files / "out")
    assert code == 2 and "cannot write: it is a folder; expected a file name" in err
    code, _, err = run(capsys, command, net, files / "out" / "net.docx")
    assert code == 2 and "found extension '.docx'" in err
    code, _, err = run(capsys, command, net, files / "out" / "net.solverstate")
    assert code == 2 and "names a solver snapshot" in err and "the file to write is a net" in err
    assert "name it .caffemodel" in err
    code, _, err = run(capsys, command, files / "solver.prototxt", files / "out" / "s.caffemodel")
    assert code == 2 and "the file to write is a solver" in err
    assert not os.listdir(files / "out")


def test_an_output_into_a_read_only_place(files, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr("tempfile.mkstemp", refuse)
    code, _, err = run(capsys, "convert", files / "net.prototxt", files / "out" / "n.json")
    assert code == 2 and "n.json: cannot write the file: Permission denied" in err
    assert "fix: check that the folder is writable" in err


@pytest.mark.parametrize("command", ["convert", "upgrade"])
def test_ctrl_c_mid_write_leaves_the_old_file_intact(files, capsys, monkeypatch, command):
    target = files / "out" / "net.prototxt"
    target.write_text("the old file\n")

    def interrupted(fd):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "fsync", interrupted)
    code, _, err = run(capsys, command, files / "net.prototxt", target)
    assert code == 130 and f"netspec {command}: interrupted" in err
    assert target.read_text() == "the old file\n"
    assert os.listdir(files / "out") == ["net.prototxt"]       # no temporary file left behind


def test_an_os_error_on_a_named_file_is_a_user_error(files, capsys, monkeypatch):
    def run_command(args):
        raise FileNotFoundError(2, "No such file or directory", "nowhere/train.log")
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda names: parser)
    parser._subparsers._group_actions[0].choices["check"].set_defaults(run=run_command)
    code, _, err = run(capsys, "check", files / "net.prototxt")
    assert code == 2
    assert err.startswith("netspec check: error: nowhere/train.log: cannot open the file: No such file")


def test_a_closed_pipe_is_not_an_error(files, capsys, monkeypatch):
    def write(text):
        raise BrokenPipeError(32, "Broken pipe")
    monkeypatch.setattr("sys.stdout.write", write)
    assert main(["check", str(files / "net.prototxt")]) == 0


# -- --help ----------------------------------------------------------------------------------

SHARED = {"input": "NAME=N,C,H,W", "phase": None, "stage": None, "level": None, "backend": None}


def subparsers():
    return cli.build_parser()._subparsers._group_actions[0].choices


def test_help_lists_exactly_the_built_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert list(subparsers()) == cli.COMMANDS
    for name in cli.COMMANDS:
        assert re.search(rf"^    {name}\s", out, re.M)         # a long name has its help on the next line
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0 and f"usage: netspec {name}" in capsys.readouterr().out


def test_the_same_thing_has_the_same_option_in_every_command():
    seen = {}
    for name, parser in subparsers().items():
        for action in parser._actions:
            if action.dest in SHARED and action.option_strings:     # not IN of convert
                assert action.option_strings == [f"--{action.dest}"], (name, action.option_strings)
                if action.dest in ("phase", "backend"):
                    seen.setdefault(action.dest, set()).add(tuple(action.choices))
                if SHARED[action.dest]:
                    assert action.metavar == SHARED[action.dest], name
                if action.dest in ("input", "stage"):
                    assert action.default == [] and action.nargs is None, name
    assert seen["phase"] == {("TRAIN", "TEST")}
    assert seen["backend"] == {("numpy", "cupy")}


# -- pathological input ----------------------------------------------------------------------

def test_runaway_nesting_is_refused_quickly(files, capsys):
    (files / "deep.prototxt").write_text("layer { " * 50000)
    code, err = run_reader(capsys, "check", files / "deep.prototxt", files)
    assert code == 2 and "deep.prototxt:1:" in err and "nested more than 100 deep" in err


def test_runaway_yaml_nesting_does_not_crash(files):
    # LibYAML's composer recurses in C: without the depth check this is a segfault, so it
    # runs in a process of its own.
    (files / "deep.yaml").write_text("layer: " + "[" * 100000)
    done = subprocess.run([sys.executable, "-m", "netspec.cli", "check", str(files / "deep.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    # our own depth check, or (PyYAML >= 6.0.4) the parser's: either names the place and the nesting
    assert "deep.yaml:1:" in done.stderr and "nest" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("name, text, words", [
    ("net.yaml", NET, "reads as protobuf text, not YAML: give it a .prototxt extension"),
    ("net.json", NET, "reads as protobuf text, not JSON: give it a .prototxt extension"),
    ("net2.prototxt", '{"name": "n", "layer": []}', "reads as JSON, not protobuf text: give it a .json"),
    ("net3.prototxt", "name: n\nlayer:\n- name: a\n  type: ReLU\n", "reads as YAML, not protobuf text"),
])
def test_a_file_in_another_format_than_its_extension_says(files, capsys, name, text, words):
    (files / name).write_text(text)
    for command in ("check", "convert"):
        code, err = run_reader(capsys, command, files / name, files)
        assert code == 2 and words in err


def test_out_of_memory_is_a_user_error(files, capsys, monkeypatch):
    import netspec.net

    def too_big(*args, **kwargs):
        raise MemoryError("Unable to allocate 894. GiB for an array with shape (2, 3, 200000, 200000)")
    monkeypatch.setattr(netspec.net.Net, "__init__", too_big)
    code, _, err = run(capsys, "time", files / "net.prototxt", "-n", "1")
    assert code == 2 and "netspec time: error: out of memory: Unable to allocate 894. GiB" in err
    assert "use a smaller batch or input" in err


def test_an_unreadable_file(files, capsys, monkeypatch):
    # Tests run as root, whom chmod 000 does not stop: the OS's refusal is simulated.
    import netspec.utils as utils

    def refuse(path, mode="r"):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(utils, "open", refuse, raising=False)
    code, err = run_reader(capsys, "check", files / "net.prototxt", files)
    assert code == 2 and "net.prototxt: cannot read the file: Permission denied" in err
    assert "fix: check the file's permissions" in err


@pytest.mark.parametrize("text", ['a{"":[', 'layer { name: "x" } : ['])
def test_a_list_after_a_closed_message_is_a_clean_error(files, capsys, text):
    (files / "odd.prototxt").write_text(text)
    code, err = run_reader(capsys, "check", files / "odd.prototxt", files)
    assert code == 2 and "odd.prototxt:1:" in err


def test_stages_are_repeatable_and_comma_separated_as_in_caffe(files, capsys):
    staged = NET + ('layer { name: "extra" type: "ReLU" bottom: "ip" top: "ip" '
                    'include { stage: "b" stage: "c" } }\n')
    (files / "staged.prototxt").write_text(staged)
    code, out, _ = run(capsys, "check", files / "staged.prototxt", "--stage", "a,b", "--stage", "c", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["state"]["stages"] == ["a", "b", "c"]
    assert "extra" in [layer["name"] for layer in doc["layers"]]
    code, out, _ = run(capsys, "time", files / "staged.prototxt", "--stage", "b,c", "-n", "1")
    assert code == 0 and "extra\tforward:" in out
    code, out, _ = run(capsys, "time", files / "staged.prototxt", "--stage", "b", "-n", "1")
    assert code == 0 and "extra\tforward:" not in out
    for name, parser in subparsers().items():
        for action in parser._actions:
            if action.dest == "stage":
                assert "comma-separated" in action.help, name


def test_a_symbolic_link_at_the_output_is_replaced_not_written_through(files, capsys):
    target = files / "out" / "real.prototxt"
    target.write_text("old\n")
    link = files / "link.prototxt"
    link.symlink_to(target)
    assert run(capsys, "upgrade", files / "net.prototxt", link)[0] == 0
    assert not link.is_symlink() and 'name: "small"' in link.read_text()
    assert target.read_text() == "old\n"      # a planted link cannot aim the write elsewhere


@pytest.mark.parametrize("command", ["check", "time"])
def test_a_level_outside_int32_is_refused_by_the_parser(files, capsys, command):
    with pytest.raises(SystemExit) as e:
        main([command, str(files / "net.prototxt"), "--level", str(2**40)])
    assert e.value.code == 2
    assert f"argument --level: found {2**40}; expected an integer from -2147483648 to 2147483647" \
        in capsys.readouterr().err


def test_convert_help_names_every_extension_it_reads(capsys):
    from netspec.io import FORMATS
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for extensions in FORMATS.values():
        for ext in extensions:
            assert f"{ext} " in out or f"{ext})" in out, ext
