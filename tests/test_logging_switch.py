"""DEBUG logging switched on and off at run time: lock() answers its common case natively and
must still notice (services change log levels without restarting)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from ferrolock import lockutils

LOGGER = logging.getLogger("ferrolock.lockutils")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def records() -> Iterator[_Records]:
    handler = _Records()
    old_level = LOGGER.level
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(old_level)
        logging.disable(logging.NOTSET)


def _cycle() -> None:
    with lockutils.lock("switch"):
        pass


def test_level_changes_take_effect_at_once(records: _Records) -> None:
    _cycle()  # logging's level memo now says "no DEBUG"
    assert records.messages == []
    LOGGER.setLevel(logging.DEBUG)
    _cycle()
    assert records.messages == [
        'Acquiring lock "switch"',
        'Acquired lock "switch"',
        'Releasing lock "switch"',
    ]
    LOGGER.setLevel(logging.INFO)
    _cycle()
    assert len(records.messages) == 3


def test_logging_disable_and_logger_disabled_silence_it(records: _Records) -> None:
    LOGGER.setLevel(logging.DEBUG)
    logging.disable(logging.DEBUG)
    _cycle()
    assert records.messages == []
    logging.disable(logging.NOTSET)
    LOGGER.disabled = True
    try:
        _cycle()
    finally:
        LOGGER.disabled = False
    assert records.messages == []
    _cycle()
    assert len(records.messages) == 3


def test_do_log_false_never_logs(records: _Records) -> None:
    LOGGER.setLevel(logging.DEBUG)
    with lockutils.lock("switch", do_log=False):
        pass
    assert records.messages == []


def test_synchronized_logs_on_lockutils_log_as_patched() -> None:
    """Tests of services patch ``lockutils.LOG`` to see synchronized's DEBUG lines, as with oslo."""
    from unittest import mock

    with mock.patch.object(lockutils, "LOG") as log:
        log.isEnabledFor.return_value = True

        @lockutils.synchronized("patched-log")
        def f() -> int:
            return 1

        assert f() == 1
    lines = [c.args[0] for c in log.debug.call_args_list]
    assert any(line.startswith("Acquiring lock") for line in lines), lines
    assert any("acquired by" in line for line in lines), lines
