"""Token bytes to text: UTF-8 split across tokens, stop strings across tokens."""

from __future__ import annotations

from assistant.engine.stream import TextStream


def feed_all(stream: TextStream, pieces: list[bytes]) -> str:
    out = "".join(stream.feed(p) for p in pieces)
    return out + stream.flush()


def test_utf8_split_across_tokens():
    data = "héllo wörld 日本".encode()
    pieces = [data[i : i + 1] for i in range(len(data))]
    assert feed_all(TextStream(), pieces) == "héllo wörld 日本"


def test_no_partial_character_is_emitted():
    s = TextStream()
    euro = "€".encode()
    assert s.feed(euro[:1]) == ""
    assert s.feed(euro[1:2]) == ""
    assert s.feed(euro[2:]) == "€"


def test_stop_string_across_tokens_is_not_emitted():
    s = TextStream(stop=["END"])
    out = feed_all(s, [b"answer E", b"N", b"D and more"])
    assert out == "answer "
    assert s.stopped
    assert s.text == "answer "


def test_held_back_prefix_released_when_not_a_stop():
    s = TextStream(stop=["STOP"])
    assert s.feed(b"ST") == ""  # could be the start of STOP
    assert s.feed(b"AR") == "STAR"
    assert not s.stopped


def test_partial_stop_at_end_is_text():
    s = TextStream(stop=["###"])
    assert feed_all(s, [b"a#", b"#"]) == "a##"


def test_several_stops_first_wins():
    s = TextStream(stop=["\nUser:", "</s>"])
    assert feed_all(s, [b"hi</", b"s>\nUser: x"]) == "hi"
