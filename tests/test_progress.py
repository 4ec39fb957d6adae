"""Progress display off a terminal: plain periodic lines (no carriage-return frames), silent for short steps."""
import io

from src.progress import NoProgress, PlainProgress, progress_bar


def test_plain_progress_prints_whole_lines_at_its_interval_and_a_last_one():
    out = io.StringIO()
    with PlainProgress(total=4, desc="decode", unit="sent", interval=0.0, file=out) as bar:
        for _ in range(4):
            bar.update(1)
    lines = out.getvalue().splitlines()
    assert [line.split(" ")[:3] for line in lines] == [["decode:", "1/4", "(25%)"], ["decode:", "2/4", "(50%)"],
                                                        ["decode:", "3/4", "(75%)"], ["decode:", "4/4", "(100%)"],
                                                        ["decode:", "4/4", "(100%)"]]
    assert "\r" not in out.getvalue() and all(line.endswith("sent/s") for line in lines)


def test_plain_progress_is_silent_for_a_step_shorter_than_its_interval():
    out = io.StringIO()
    with PlainProgress(total=3, desc="score", interval=3600.0, file=out) as bar:
        bar.update(3)
    assert out.getvalue() == ""


def test_progress_bar_off_a_terminal_is_plain_and_disabled_counts_silently(capsys):
    bar = progress_bar(total=2, desc="x")  # pytest's captured stderr is not a terminal
    assert isinstance(bar, PlainProgress)
    off = progress_bar(total=2, desc="x", enabled=False)
    off.update(2)
    off.close()
    assert isinstance(off, NoProgress) and off.n == 2 and capsys.readouterr().err == ""
