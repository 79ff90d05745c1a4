"""What a replay makes of a dead letter: which it keeps, its original headers, where it was read from."""

from alert_sidecar.commands.replay import Counts, Selection, original_headers, source_of


def test_original_headers_drop_every_dead_letter_header_and_name_the_dead_letter():
    headers = [("survey", b"lsst"), ("x-dead-letter-reason", b"bad"), ("visit", b"1"),
               ("x-dead-letter-source", b"alerts/1/7"), ("x-dead-letter-some-later-one", b"?"),
               ("x-replayed-from", b"alerts.dead-letter/0/3"),  # from an earlier replay of the same alert
               ("survey", None)]
    assert original_headers(headers, "alerts.dead-letter/1/9") == [
        ("survey", b"lsst"), ("visit", b"1"), ("survey", None), ("x-replayed-from", b"alerts.dead-letter/1/9")]


def test_where_a_dead_letter_was_read_from():
    assert source_of([("x-dead-letter-source", b"alerts.v2/3/1234")]) == ("alerts.v2", 3, 1234)
    assert source_of([("x-dead-letter-source", b"garbled")]) is None
    assert source_of([("x-dead-letter-source", b"alerts/x/1")]) is None
    assert source_of([]) is None


def test_selection_counts_why_it_passes_over():
    counts = Counts()
    chosen = Selection(reason="schema", stage="s1")
    letters = [
        [("x-dead-letter-reason", b"unknown schema id 7"), ("x-dead-letter-stage", b"s1")],  # kept
        [("x-dead-letter-reason", b"Schema id 7"), ("x-dead-letter-stage", b"s1")],  # case counts
        [("x-dead-letter-reason", b"unknown schema id 7"), ("x-dead-letter-stage", b"s2")],
        [("survey", b"lsst")],  # not a dead letter
    ]
    assert [chosen.passes_over(h, counts) for h in letters] == [False, True, True, True]
    assert (counts.reason_filter, counts.stage_filter, counts.not_dead_letter) == (1, 1, 1)
    assert not Selection().passes_over(letters[1], Counts())
