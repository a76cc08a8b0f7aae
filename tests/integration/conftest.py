from __future__ import annotations

import pytest

from tests.integration.harness import Engine, LoopThread, Member


@pytest.fixture(scope="module")
def loops():
    lt = LoopThread()
    yield lt
    lt.stop()


@pytest.fixture
def members(loops):
    """Factory: members(name, ...) starts a test member; all are stopped after the test."""
    started: list[Member] = []

    def make(name: str, host: str = "127.0.0.1", port: int | None = None) -> Member:
        m = Member(loops, name, host, port).start()
        started.append(m)
        return m

    yield make
    for m in started:
        m.stop()


@pytest.fixture
def engine(tmp_path):
    """Factory: engine(spec_dict, workers=1) starts `lbcore serve`; stopped after the test."""
    started: list[Engine] = []

    def make(spec, workers: int = 1, start: bool = True, env=None) -> Engine:
        e = Engine(tmp_path, spec, workers=workers, env=env)
        started.append(e)
        if start:
            e.start()
        return e

    yield make
    for e in started:
        e.stop()
        # shown by pytest only when the test failed
        print(f"--- engine log ({e.spec_file}) ---\n{e.log_text()}")
