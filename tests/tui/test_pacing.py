"""FramePacer: streamed text is drawn often when drawing is cheap, less often when it is costly."""

from __future__ import annotations

from assistant.tui.pacing import FramePacer


class Clock:
    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0


def run(frame_cost: float, frames: int = 30) -> FramePacer:
    c = Clock()
    pacer = FramePacer(
        min_interval=0.04, max_interval=0.25, budget=0.08, clock=lambda: c.wall, cpu=lambda: c.cpu
    )
    interval = pacer.start()
    for _ in range(frames):
        c.wall += interval + frame_cost
        c.cpu += frame_cost
        interval = pacer.next_interval()
    return pacer


def test_cheap_frames_draw_at_the_top_rate():
    assert run(0.001).interval == 0.04


def test_costly_frames_slow_down_to_stay_within_the_budget():
    pacer = run(0.010)  # 10 ms a frame: 8% of a core allows one every ~125 ms
    assert 0.1 < pacer.interval < 0.15
    assert 0.010 / (pacer.interval + 0.010) <= 0.08 + 0.005


def test_very_costly_frames_are_capped_so_text_still_moves():
    assert run(0.100).interval == 0.25


def test_a_new_answer_draws_its_first_text_fast_then_keeps_the_learnt_rate():
    c = Clock()
    pacer = FramePacer(
        min_interval=0.04, max_interval=0.25, budget=0.08, clock=lambda: c.wall, cpu=lambda: c.cpu
    )
    pacer.start()
    for _ in range(30):  # a first answer with costly frames slows the pacer to its cap
        c.wall += pacer.interval + 0.05
        c.cpu += 0.05
        pacer.next_interval()
    assert pacer.interval == 0.25
    assert pacer.start() == 0.04  # the next answer: the first frame comes fast...
    assert pacer.waiting() == 0.04  # ...and so do polls while the prompt is still being read
    c.wall += 0.04 + 0.05
    c.cpu += 0.05
    assert pacer.next_interval() == 0.25  # after its first text: the rate learnt before
    assert pacer.waiting() == 0.25  # a pause in the text does not bring back the burst
