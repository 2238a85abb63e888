"""Numeric flags are checked where they are parsed: an impossible value ends in one
`error:` line with the valid range (exit code 2), never in a traceback later."""
import pytest

from common.run import arguments
from common.cli import h36m, in_the_wild, mpi_inf_3dhp


def parse_error(capsys, argv, parser=None):
    with pytest.raises(SystemExit) as stop:
        (parser or arguments.build_parser()).parse_args(argv)
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and err.startswith("error:") and "\n" not in err, err
    return err


@pytest.mark.parametrize("argv, expected", [
    (["-num_proposals", "0"], "0 is out of range: H, the number of hypotheses, must be an integer >= 1"),
    (["-num_proposals", "-3"], "-3 is out of range: H, the number of hypotheses, must be an integer >= 1"),
    (["-sampling_timesteps", "0"], "0 is out of range: K, the number of DDIM iterations, must be an integer >= 1"),
    (["-sampling_timesteps", "1001"], "-sampling_timesteps 1001 is more than -timestep 1000"),
    (["-timestep", "10", "--val-timesteps", "11"], "--val-timesteps 11 is more than -timestep 10"),
    (["-b", "0"], "give an integer >= 1"),
    (["--subset", "1.5"], "give a number > 0 and <= 1"),
    (["--subset", "0"], "give a number > 0 and <= 1"),
    (["-lr", "nan"], "'nan' is not a finite number"),
    (["-lrd", "inf"], "'inf' is not a finite number"),
    (["--eta", "2"], "give a number >= 0 and <= 1"),
    (["--drop-path", "1"], "give a number >= 0 and < 1"),
    (["--seed", "-1"], "the seed must be an integer >= 0 and <= 4294967295"),
    (["-e", "ten"], "'ten' is not an integer"),
    (["-cs", "30", "--heads", "4"], "-cs 30 is not a multiple of --heads 4"),
    (["-gpu", "cuda"], "'cuda' is not a CUDA device index"),
    (["--eval-batch", "-1"], "give an integer >= 0"),
])
def test_impossible_values_are_refused_with_the_valid_range(capsys, argv, expected):
    assert expected in parse_error(capsys, argv)


def test_the_issue_s_commands_end_in_one_line_not_a_traceback(capsys):
    for argv in (["-num_proposals", "0"], ["-sampling_timesteps", "0"], ["-num_proposals", "-3"]):
        with pytest.raises(SystemExit) as stop:
            h36m.main(["--evaluate", "x.bin", *argv])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and "Traceback" not in err and err.count("\n") == 1


def test_in_the_wild_flags_are_checked_too(capsys):
    parser = in_the_wild.build_wild_parser()
    assert "give a number >= 0 and <= 1" in parse_error(capsys, ["--threshold", "1.5"], parser)
    assert "give an integer >= 1" in parse_error(capsys, ["--width", "0"], parser)
    assert "give a number > 0" in parse_error(capsys, ["--fps", "0"], parser)


def test_valid_values_still_parse():
    args = arguments.build_parser().parse_args(["-num_proposals", "20", "-sampling_timesteps", "10", "--subset", "0.5",
                                                "-lr", "1e-4", "--eta", "0", "-cs", "64", "--heads", "8", "-gpu", "1,2"])
    assert (args.num_proposals, args.sampling_timesteps, args.subset, args.eta, args.cs) == (20, 10, 0.5, 0.0, 64)


@pytest.mark.parametrize("make", [arguments.build_parser, arguments.build_draw_parser, in_the_wild.build_wild_parser,
                                  mpi_inf_3dhp.parser])
def test_every_numeric_flag_has_a_checked_type(make):
    """No flag of any entry script is parsed with a bare int or float (which take 0, -3, nan, inf)."""
    unchecked = [a.option_strings[0] for a in make()._actions if a.type in (int, float)
                 and a.dest != "track_id"]                       # a track id is a name, any integer
    assert unchecked == []
