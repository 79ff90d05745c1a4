"""The commit rule (offsets.py): only the finished prefix of a partition is committed."""

from alert_sidecar.stage.offsets import PartitionLedger, Record, Resolution, State

OUT = Resolution([Record("", b"v", None, [])])
FILTERED = Resolution([])


def ledger_with(offsets):
    ledger = PartitionLedger("alerts", 0)
    entries = [ledger.append(object(), o, 10) for o in offsets]
    return ledger, entries


def test_commit_waits_for_every_earlier_alert():
    ledger, entries = ledger_with([0, 1, 2])
    batch = ledger.take(now=0, max_alerts=10, max_bytes=10**9)
    assert [e.offset for e in batch] == [0, 1, 2]
    # Answers out of order: 2 and 1 first, then 0.
    ledger.resolve(entries[2], OUT)
    ledger.resolve(entries[1], FILTERED)
    assert list(ledger.emittable()) == []  # 0 is not answered: nothing may be emitted
    ledger.resolve(entries[0], OUT)
    emitted = list(ledger.emittable())
    assert [e.offset for e in emitted] == [0, 1, 2]
    assert entries[1].state is State.DONE  # filtered: nothing to acknowledge
    assert ledger.advance() is None  # 0 has an unacknowledged output
    ledger.acknowledge(entries[0])
    assert ledger.advance() == 2  # 0 and 1 finished; 2 still waits for its ack
    ledger.mark_committed(2)
    ledger.acknowledge(entries[2])
    assert ledger.advance() == 3
    assert ledger.unfinished == 0


def test_commit_target_stays_until_a_commit_succeeds():
    ledger, entries = ledger_with([5])
    ledger.take(0, 10, 10**9)
    ledger.resolve(entries[0], FILTERED)
    list(ledger.emittable())
    assert ledger.advance() == 6
    assert ledger.advance() == 6  # not confirmed yet: asked again
    ledger.mark_committed(6)
    assert ledger.advance() is None


def test_offset_gaps_are_followed_not_computed():
    # Compacted topics and transaction markers leave gaps in offsets.
    ledger, entries = ledger_with([10, 13, 20])
    ledger.take(0, 10, 10**9)
    for entry in entries:
        ledger.resolve(entry, FILTERED)
    list(ledger.emittable())
    assert ledger.advance() == 21


def test_give_back_restores_offset_order_and_backoff_blocks_later_alerts():
    ledger, entries = ledger_with([0, 1, 2, 3])
    first = ledger.take(0, 2, 10**9)
    assert [e.offset for e in first] == [0, 1]
    ledger.give_back(first, not_before=5.0)
    assert ledger.in_flight == 0
    assert ledger.take(now=1.0, max_alerts=10, max_bytes=10**9) == []  # 0 waits for its backoff; 2 must not overtake
    again = ledger.take(now=5.0, max_alerts=10, max_bytes=10**9)
    assert [e.offset for e in again] == [0, 1, 2, 3]


def test_take_respects_byte_limit_but_always_sends_one():
    ledger = PartitionLedger("alerts", 0)
    for offset in range(3):
        ledger.append(object(), offset, 100)
    assert len(ledger.take(0, 10, max_bytes=150)) == 1
    assert len(ledger.take(0, 10, max_bytes=50)) == 1  # larger than the limit alone: still sent


def test_abandon_forgets_unfinished_and_ignores_later_answers():
    ledger, entries = ledger_with([0, 1, 2])
    ledger.take(0, 10, 10**9)
    ledger.resolve(entries[0], OUT)
    assert [e.offset for e in ledger.emittable()] == [0]  # produced, its acknowledgement still to come
    assert ledger.abandon() == 3
    assert ledger.revoked
    # Answers that arrive after the partition was taken away: the worker's for
    # 1 and 2, the cluster's acknowledgement of 0's output.
    ledger.resolve(entries[1], OUT)
    ledger.resolve(entries[2], FILTERED)
    ledger.acknowledge(entries[0])
    assert list(ledger.emittable()) == []  # nothing more is produced...
    assert ledger.advance() is None  # ... and nothing committed: the next owner reads 0, 1 and 2 again
    assert ledger.committed is None and ledger.unfinished == 0
    assert ledger.in_flight == 0 and ledger.buffered_bytes == 0  # late answers change no count
    assert entries[1].resolution is None


def test_buffered_bytes_fall_to_zero_when_done():
    ledger, entries = ledger_with([0, 1])
    assert ledger.buffered_bytes == 20
    ledger.take(0, 10, 10**9)
    ledger.resolve(entries[0], OUT)
    ledger.resolve(entries[1], FILTERED)
    list(ledger.emittable())
    assert ledger.buffered_bytes == 10  # 0 still waits for its acknowledgement
    ledger.acknowledge(entries[0])
    assert ledger.buffered_bytes == 0


class Keyed:
    def __init__(self, key):
        self._key = key

    def key(self):
        return self._key


def keyed_ledger(keys):
    ledger = PartitionLedger("alerts", 0)
    entries = [ledger.append(Keyed(k), offset, 10) for offset, k in enumerate(keys)]
    return ledger, entries


def test_by_key_holds_a_key_in_flight_and_lets_others_go():
    ledger, entries = keyed_ledger([b"a", b"b", b"a", b"c", None])
    first = ledger.take(0, 2, 10**9, by_key=True)
    assert [e.offset for e in first] == [0, 1]
    second = ledger.take(0, 10, 10**9, by_key=True)
    assert [e.offset for e in second] == [3, 4]  # offset 2 (key a) waits for offset 0
    ledger.resolve(entries[0], FILTERED)
    third = ledger.take(0, 10, 10**9, by_key=True)
    assert [e.offset for e in third] == [2]


def test_by_key_backoff_blocks_only_its_key():
    ledger, entries = keyed_ledger([b"a", b"a", b"b"])
    batch = ledger.take(0, 1, 10**9, by_key=True)
    ledger.give_back(batch, not_before=5.0)
    assert [e.offset for e in ledger.take(1.0, 10, 10**9, by_key=True)] == [2]
    assert [e.offset for e in ledger.take(6.0, 10, 10**9, by_key=True)] == [0, 1]


def test_give_back_merges_when_several_batches_are_in_flight():
    ledger, entries = ledger_with(range(6))
    first = ledger.take(0, 2, 10**9)
    second = ledger.take(0, 2, 10**9)
    ledger.give_back(second)
    ledger.give_back(first)
    assert [e.offset for e in ledger.take(0, 10, 10**9)] == [0, 1, 2, 3, 4, 5]
