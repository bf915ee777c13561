"""Best weights are written at most every so often, and never lost at the end."""

from __future__ import annotations

from cytoreview.workflows.checkpointing import BestWeightsWriter


def test_improvements_are_written_at_most_every_interval_and_the_last_one_at_flush() -> None:
    now = [0.0]
    written: list[int] = []
    writer = BestWeightsWriter(lambda state, stats: written.append(stats), 30.0,
                               clock=lambda: now[0])  # fmt: skip
    assert not writer.any
    writer.offer({}, 1)  # the first improvement: at once
    for epoch, t in ((2, 5.0), (3, 12.0), (4, 29.0)):
        now[0] = t
        writer.offer({}, epoch)
    assert written == [1]
    now[0] = 31.0
    writer.offer({}, 5)  # 31 s after the last write
    assert written == [1, 5]
    now[0] = 40.0
    writer.offer({}, 6)
    writer.flush()  # end of the run (or a failure): the newest best is written
    writer.flush()  # nothing pending: no second write
    assert written == [1, 5, 6] and writer.writes == 3 and writer.any
