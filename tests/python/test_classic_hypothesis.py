"""Hypothesis stateful test of classic mode against a small model (R43-R69, D5, D7).

The model is a list of registrations, newest first, each with the callbacks it defines and
its pending-start count; every step compares the exact callback log and the result."""

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mmn_fast import MM, Notifier, Range, WouldBlock, synchronize

START, END, IR = "invalidate_range_start", "invalidate_range_end", "invalidate_range"
OPTIONAL = (START, END, IR, "clear_young", "test_young", "release")
RANGES = [Range(0, 0x1000), Range(0x1000, 0x3000), Range(0x10, 0x20)]


class Model:
    """One registration as the model sees it."""

    def __init__(self, notifier, methods, refuse, young, users=1, shared=None):
        self.notifier, self.methods, self.refuse, self.young = notifier, methods, refuse, young
        self.pending, self.users, self.shared = 0, users, shared


def make(log, name, methods, refuse, young):
    def callback(method):
        def call(self, *args):
            log.append((name, method))
            if method == START and refuse and not args[0].blockable:
                raise WouldBlock()
            return young
        return call

    namespace = {m: callback(m) for m in methods}
    namespace["free_notifier"] = lambda self: log.append((name, "free"))
    namespace["alloc_notifier"] = classmethod(lambda cls, mm: cls())
    return type(name, (Notifier,), namespace)


class ClassicMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.mm = MM()
        self.log = []
        self.model = []  # newest first
        self.open = []  # ranges started and not ended
        self.released = False
        self.ever = False
        self.count = 0
        self.shared = {}  # get_notifier classes by name

    def expect(self, entries):
        assert self.log == entries, (self.log, entries)
        self.log.clear()

    @precondition(lambda self: not self.released)
    @rule(methods=st.sets(st.sampled_from(OPTIONAL)), refuse=st.booleans(),
          young=st.booleans())
    def register(self, methods, refuse, young):
        if refuse:
            methods = methods - {END}  # a refuser must not define end (R45): no warning
        self.count += 1
        name = f"N{self.count}"
        cls = make(self.log, name, methods, refuse, young)
        n = cls()
        self.mm.register(n)
        self.model.insert(0, Model(n, methods, refuse, young))
        self.ever = True

    @precondition(lambda self: not self.released)
    @rule(which=st.sampled_from(["G1", "G2"]))
    def get(self, which):
        if which not in self.shared:
            self.shared[which] = make(self.log, which, {START, END, IR}, False, False)
        cls = self.shared[which]
        n = self.mm.get_notifier(cls)
        for m in self.model:
            if m.shared is cls:
                assert m.notifier is n
                m.users += 1
                break
        else:
            self.model.insert(0, Model(n, {START, END, IR}, False, False, shared=cls))
        self.ever = True

    @precondition(lambda self: any(m.shared for m in self.model))
    @rule(data=st.data())
    def put(self, data):
        m = data.draw(st.sampled_from([m for m in self.model if m.shared]))
        m.notifier.put()
        m.users -= 1
        if m.users == 0:
            self.model.remove(m)
            synchronize()
            self.expect([(type(m.notifier).__name__, "free")])  # R68: no release
        else:
            self.expect([])

    @precondition(lambda self: any(not m.shared for m in self.model))
    @rule(data=st.data())
    def unregister(self, data):
        m = data.draw(st.sampled_from([m for m in self.model if not m.shared]))
        self.mm.unregister(m.notifier)
        self.model.remove(m)
        name = type(m.notifier).__name__
        self.expect([(name, "release")] if "release" in m.methods else [])

    @rule(r=st.sampled_from(RANGES), blockable=st.booleans())
    def start(self, r, blockable):
        rng = Range(r.start, r.end, blockable=blockable)
        given = list(self.model)
        expected = [(type(m.notifier).__name__, START) for m in given if START in m.methods]
        refused = not blockable and any(m.refuse and START in m.methods for m in given)
        try:
            self.mm.invalidate_range_start(rng)
            assert not refused
            for m in given:
                m.pending += 1  # D5: counted whatever it defines
            self.open.append(rng)
        except WouldBlock:
            assert refused
            expected += [(type(m.notifier).__name__, END) for m in given if END in m.methods]
        self.expect(expected)

    @precondition(lambda self: self.open)
    @rule(data=st.data(), only_end=st.booleans())
    def end(self, data, only_end):
        rng = self.open.pop(data.draw(st.integers(0, len(self.open) - 1)))
        self.mm.invalidate_range_end(rng, only_end=only_end)
        expected = []
        for m in self.model:  # D5: only notifiers with a start pending
            if m.pending:
                m.pending -= 1
                name = type(m.notifier).__name__
                if IR in m.methods and not only_end:
                    expected.append((name, IR))
                if END in m.methods:
                    expected.append((name, END))
        self.expect(expected)

    @rule()
    def young(self):
        answered = [m for m in self.model if "clear_young" in m.methods]
        assert self.mm.clear_young(0, 0x1000) is any(m.young for m in answered)
        self.expect([(type(m.notifier).__name__, "clear_young") for m in answered])
        expected, result = [], False
        for m in self.model:
            if "test_young" in m.methods:
                expected.append((type(m.notifier).__name__, "test_young"))
                if m.young:
                    result = True
                    break
        assert self.mm.test_young(0x10) is result
        self.expect(expected)

    @precondition(lambda self: not self.released and not self.open)
    @rule()
    def release(self):
        self.mm.release()
        self.released = True
        self.expect([(type(m.notifier).__name__, "release") for m in self.model
                      if "release" in m.methods])
        self.model = []  # R60: all unhashed (they stay registered for their owners, R61)

    @invariant()
    def mm_state(self):
        assert self.mm.active_invalidate_ranges == len(self.open)
        assert self.mm.has_notifiers is self.ever

    def teardown(self):
        for rng in self.open:
            self.mm.invalidate_range_end(rng)
        for m in self.model:
            if m.shared:
                for _ in range(m.users):
                    m.notifier.put()
            else:
                self.mm.unregister(m.notifier)
        synchronize()


ClassicMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=25,
                                            deadline=None)
TestClassicModel = ClassicMachine.TestCase
