"""The commit rule over random sequences of steps: a stateful test of ``PartitionLedger``.

The steps are the stage's: fetch alerts, take a batch (by offset or by key),
resolve an alert in flight, give alerts back, emit what may leave, acknowledge
a record, advance the commit, and abandon the partition (then late answers and
acknowledgements reach the abandoned ledger while a new one reads the
partition again from its last commit). After every step:

- the commit target only moves forward, and never passes an alert that is not DONE;
- the counts (in_flight, buffered_bytes, unfinished) are never negative, and are
  exactly what the alerts' states say;
- every alert fetched is exactly one of DONE, still waiting in its ledger, or
  abandoned, and an abandoned one is never finished afterwards.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from alert_sidecar.stage.offsets import Entry, PartitionLedger, Record, Resolution, State

# A step costs microseconds: 100 sequences of up to 60 steps take a few seconds.
MACHINE = settings(max_examples=100, stateful_step_count=60, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow])


class Message:
    """A fetched record as the ledger reads it: only its key (for ordering by key)."""

    def __init__(self, key: bytes | None) -> None:
        self._key = key

    def key(self) -> bytes | None:
        return self._key


def some_or_all(entries: list[Entry]) -> st.SearchStrategy[list[Entry]]:
    """All of ``entries`` (a whole batch answered, every record delivered), or some of them in any order."""
    return st.one_of(st.just(entries), st.lists(st.sampled_from(entries), min_size=1, unique_by=id))


# The steps, as often as the stage takes them. One rule draws the next step:
# with a rule per step, hypothesis would run most sequences with some steps
# disabled (swarm testing), and few would get from a fetch to a commit.
# A rebalance (abandon) is rarer than the rest, so that sequences get to commits.
STEPS = [*["fetch"] * 3, *["take"] * 4, *["answer"] * 4, "give_back", *["emit"] * 3, *["acknowledge"] * 4,
         *["advance"] * 2, "abandon", "late_answer", "late_acknowledgement"]


class LedgerMachine(RuleBasedStateMachine):
    """One input partition: its current ledger, and those abandoned before it."""

    steps = STEPS

    @initialize(by_key=st.booleans(), start=st.integers(0, 2**40))
    def start(self, by_key: bool, start: int) -> None:
        self.by_key = by_key  # a stage orders by partition (and none) or by key, never both
        self.start_offset = start
        self.ledger = PartitionLedger("alerts", 3)
        self.abandoned_ledgers: list[PartitionLedger] = []
        self.next_offset = start
        self.now = 0.0
        self.entries: dict[int, tuple[PartitionLedger, Entry]] = {}  # every alert fetched, by id(entry)
        self.in_flight: dict[int, Entry] = {}  # taken and not yet resolved or given back, every ledger
        self.unacked: dict[int, Entry] = {}  # emitted with records still to acknowledge, every ledger
        self.abandoned: set[int] = set()
        self.targets: dict[int, int] = {}  # id(ledger) -> the furthest commit target seen

    @rule(data=st.data())
    def step(self, data) -> None:
        name = data.draw(st.sampled_from(self.steps), label="step")
        getattr(self, name)(data)

    def _current(self, pool: dict[int, Entry]) -> list[Entry]:
        return [e for k, e in pool.items() if self.entries[k][0] is self.ledger]

    def _late(self, pool: dict[int, Entry]) -> list[Entry]:
        return [e for k, e in pool.items() if self.entries[k][0] is not self.ledger]

    # -- the stage's steps

    def fetch(self, data) -> None:
        if self.ledger.waiting >= 8:  # a partition's fetches wait for room, as the stage's do
            return
        for _ in range(data.draw(st.integers(1, 4), label="alerts")):
            key = data.draw(st.sampled_from([None, b"a", b"b", b"c"]), label="key")
            entry = self.ledger.append(Message(key), self.next_offset, data.draw(st.integers(0, 1000), label="size"),
                                       now=self.now)
            self.entries[id(entry)] = (self.ledger, entry)
            self.next_offset += data.draw(st.integers(1, 3), label="gap")  # compaction and markers leave gaps

    def take(self, data) -> None:
        self.now += data.draw(st.floats(0, 2), label="wait")
        max_alerts = data.draw(st.integers(1, 5), label="max_alerts")
        max_bytes = data.draw(st.sampled_from([1, 500, 10**9]), label="max_bytes")
        ready_before = self.ledger.ready
        batch = self.ledger.take(self.now, max_alerts, max_bytes, by_key=self.by_key)
        assert len(batch) <= max_alerts and self.ledger.ready == ready_before - len(batch)
        assert [e.offset for e in batch] == sorted(e.offset for e in batch)
        for entry in batch:
            assert id(entry) not in self.in_flight and entry.state is State.IN_FLIGHT
            self.in_flight[id(entry)] = entry

    def answer(self, data) -> None:
        """A worker's answers for alerts in flight: outputs (none, one, two) or a dead letter each."""
        if not self._current(self.in_flight):
            return
        for entry in data.draw(some_or_all(self._current(self.in_flight)), label="answered"):
            records = data.draw(st.integers(-1, 2), label="records")
            if records < 0:
                resolution = Resolution([Record("dead-letter", b"v", None, [])], dead_letter_reason="bad")
            else:
                resolution = Resolution([Record("", b"v", None, []) for _ in range(records)])
            self.ledger.resolve(entry, resolution)
            del self.in_flight[id(entry)]
            assert entry.state is State.RESOLVED
        if data.draw(st.booleans(), label="emitted at once"):  # as the stage does after each answer
            self.emit(data)

    def give_back(self, data) -> None:
        """A retry, or a call that failed: alerts in flight go back among the ready ones."""
        if not self._current(self.in_flight):
            return
        entries = data.draw(some_or_all(self._current(self.in_flight)), label="given back")
        self.ledger.give_back(entries, not_before=self.now + data.draw(st.floats(0, 3), label="backoff"))
        for entry in entries:
            del self.in_flight[id(entry)]
            assert entry.state is State.PENDING

    def emit(self, data) -> None:
        emitted = list(self.ledger.emittable())
        assert [e.offset for e in emitted] == sorted(e.offset for e in emitted)
        for entry in emitted:
            assert entry.state in (State.EMITTED, State.DONE)
            if entry.state is State.EMITTED:
                assert entry.unacked > 0
                self.unacked[id(entry)] = entry

    def acknowledge(self, data) -> None:
        """Delivery reports for some records, in any order."""
        if not self._current(self.unacked):
            return
        for entry in data.draw(some_or_all(self._current(self.unacked)), label="acknowledged"):
            self.ledger.acknowledge(entry)
            if entry.unacked == 0:
                del self.unacked[id(entry)]
                assert entry.state is State.DONE
        if data.draw(st.booleans(), label="committed at once"):  # as the stage's next commit would
            self.advance(data)

    def advance(self, data) -> None:
        target = self.ledger.advance()
        if target is not None and data.draw(st.booleans(), label="commit succeeds"):
            self.ledger.mark_committed(target)

    def abandon(self, data) -> None:
        """The partition is taken away; it is read again, from its last commit, by a new ledger."""
        ledger = self.ledger
        unfinished = {k for k, (owner, e) in self.entries.items() if owner is ledger and e.state is not State.DONE}
        assert ledger.abandon() == len(unfinished)
        self.abandoned |= unfinished
        self.abandoned_ledgers.append(ledger)
        self.ledger = PartitionLedger("alerts", 3)
        self.next_offset = ledger.committed if ledger.committed is not None else self.start_offset

    # -- what reaches an abandoned ledger afterwards

    def late_answer(self, data) -> None:
        if self._late(self.in_flight):
            entry = data.draw(st.sampled_from(self._late(self.in_flight)), label="answered late")
            self.entries[id(entry)][0].resolve(entry, Resolution([]))

    def late_acknowledgement(self, data) -> None:
        if self._late(self.unacked):
            entry = data.draw(st.sampled_from(self._late(self.unacked)), label="acknowledged late")
            self.entries[id(entry)][0].acknowledge(entry)

    # -- the invariants

    @invariant()
    def counts_are_what_the_states_say(self) -> None:
        ledger = self.ledger
        mine = [e for owner, e in self.entries.values() if owner is ledger]
        not_done = [e for e in mine if e.state is not State.DONE]
        assert ledger.in_flight == len(self._current(self.in_flight)) >= 0
        assert ledger.buffered_bytes == sum(e.size for e in not_done) >= 0
        assert ledger.unfinished == len(not_done) >= 0
        assert ledger.ready == sum(1 for e in mine if e.state is State.PENDING) >= 0
        for gone in self.abandoned_ledgers:  # forgotten: nothing to send, wait for or count
            assert (gone.in_flight, gone.buffered_bytes, gone.unfinished, gone.ready) == (0, 0, 0, 0)

    @invariant()
    def the_commit_target_moves_forward_over_done_alerts_only(self) -> None:
        for ledger in [*self.abandoned_ledgers, self.ledger]:
            target = ledger.commit_target
            if target is None:
                assert id(ledger) not in self.targets
                continue
            assert target >= self.targets.get(id(ledger), target)
            self.targets[id(ledger)] = target
            behind = [e for owner, e in self.entries.values() if owner is ledger and e.offset < target]
            assert all(e.state is State.DONE for e in behind), "committed past an alert that is not done"
            assert ledger.committed is None or ledger.committed <= target

    @invariant()
    def every_alert_is_done_waiting_or_abandoned_exactly_once(self) -> None:
        for key, (owner, entry) in self.entries.items():
            done = entry.state is State.DONE
            abandoned = key in self.abandoned
            waiting = not done and not abandoned and owner is self.ledger
            assert done + abandoned + waiting == 1, f"alert at {entry.offset} is {entry.state.value}, " \
                                                    f"{'' if abandoned else 'not '}abandoned"
            if done:
                assert entry.message is None  # its bytes are let go


LedgerMachine.TestCase.settings = MACHINE
test_the_commit_rule_holds_over_any_sequence_of_steps = LedgerMachine.TestCase


class LedgerMachineWithLateGiveBack(LedgerMachine):
    """The same, where a retry or a failed call also gives alerts back to an abandoned ledger."""

    steps = [*STEPS, "late_give_back"]

    def late_give_back(self, data) -> None:
        if self._late(self.in_flight):
            entry = data.draw(st.sampled_from(self._late(self.in_flight)), label="given back late")
            self.entries[id(entry)][0].give_back([entry], not_before=self.now)


# give_back did not ignore an abandoned ledger as resolve and acknowledge do
# (test_properties_found.py has the smallest case); fixed, and kept.
LedgerMachineWithLateGiveBack.TestCase.settings = MACHINE
test_the_commit_rule_holds_with_late_give_backs = LedgerMachineWithLateGiveBack.TestCase
